"""Cohorts half a round apart: one cohort scores while another generates, and every task's
results stay exactly those of running each stage for all tasks at once (same seed)."""

import pytest

from pmpo_ray.config import PromptFormat, ReplicaConfig
from pmpo_ray.engines.ray_data_client import RayDataClient
from pmpo_ray.engines.replicas import ReplicaPool
from pmpo_ray.engines.vllm_engine import VllmConfig
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.pmpo.rounds import cohort_of, run_rounds
from pmpo_ray.pmpo.task_run import TaskRun
from pmpo_ray.tasks.example import Example
from pmpo_ray.tasks.task import Task
from tests.fakes import FakeEngine, QuickFakeReplica, TimedClient, scripted_rewrites
from tests.test_resume import comparable

FORMAT = PromptFormat()


def make_runs(n_tasks: int, iterations: int = 2, patience: int | None = None) -> list[TaskRun]:
    count_tokens = FakeEngine(scripted_rewrites).count_tokens
    runs = []
    for t in range(n_tasks):
        name = f"task{t}"
        train = tuple(
            Example(f"{name}-{i}", f"{name} question {i}", "answer " * (i + t % 3 + 1))
            for i in range(5)
        )
        config = OptimizerConfig(
            iterations=iterations + t % 2,  # tasks finish at different rounds
            hard_cases=2,
            rewrites_per_case=2,
            patience=patience,
            seed=t,
        )
        task = Task(name, "supervised", "answer", "Think.", train, ())
        runs.append(TaskRun(task, config, count_tokens, FORMAT))
    return runs


def baseline(n_tasks: int) -> list[dict]:
    engine = FakeEngine(scripted_rewrites)
    return [comparable(r) for r in run_rounds(make_runs(n_tasks), rewriter=engine, scorer=engine)]


def test_cohorts_are_even_blocks_of_the_tasks_in_order():
    runs = make_runs(5)
    assert list(cohort_of(runs, 2).values()) == [0, 0, 0, 1, 1]
    assert list(cohort_of(runs, 1).values()) == [0] * 5
    assert list(cohort_of(runs[:1], 2).values()) == [0]


def test_the_suite_overlaps_only_with_a_rewriter_pool_of_its_own():
    from pmpo_ray.jobs import SuiteConfig

    task = {"task": {"name": "t", "data": "builtin:bbh/navigate.json", "initial_prompt": "Go."}}
    shared = SuiteConfig(name="s", tasks=[task])
    separate = SuiteConfig(name="s", tasks=[task], rewriter={})
    assert shared.stage_cohorts() == 1 and separate.stage_cohorts() == 2
    assert SuiteConfig(name="s", tasks=[task], cohorts=3).stage_cohorts() == 3


@pytest.mark.parametrize("cohorts", [2, 3])
def test_cohorts_overlap_stages_and_change_no_result(cohorts):
    client = TimedClient(FakeEngine(scripted_rewrites), delay_seconds=0.02, concurrent_jobs=True)
    rounds = []

    def record(index, advanced, stats):
        rounds.append((index, {int(run.task.task_id[4:]) for run in advanced}, stats))

    results = run_rounds(
        make_runs(6), rewriter=client, scorer=client, cohorts=cohorts, on_round=record
    )
    assert [comparable(r) for r in results] == baseline(6)
    assert client.overlapped()
    assert [index for index, _, _ in rounds] == list(range(1, len(rounds) + 1))
    assert all(stats["active_tasks"] == len(tasks) for _, tasks, stats in rounds)
    # every round is one cohort's (tasks in order, in even blocks), never split or mixed
    blocks = [set(range(c * 6 // cohorts, (c + 1) * 6 // cohorts)) for c in range(cohorts)]
    sizes = {c: [] for c in range(cohorts)}
    for _, tasks, _ in rounds:
        [cohort] = [c for c, block in enumerate(blocks) if tasks <= block]
        sizes[cohort].append(len(tasks))
    for cohort, played in sizes.items():  # the whole cohort plays until its tasks finish
        assert played[0] == len(blocks[cohort]) and played == sorted(played, reverse=True)


def test_one_cohort_runs_each_stage_for_all_tasks_in_one_call():
    client = TimedClient(FakeEngine(scripted_rewrites), concurrent_jobs=True)
    runs = make_runs(4)
    played = []

    def check(index, advanced, stats):  # every task still running plays every round
        assert all(run.done for run in runs if run not in advanced)
        played.append(len(advanced))

    results = run_rounds(runs, rewriter=client, scorer=client, cohorts=1, on_round=check)
    assert [comparable(r) for r in results] == baseline(4)
    assert not client.overlapped()
    assert played[0] == 4 and played == sorted(played, reverse=True)
    # one scoring call per round at most (none when every rewrite was a repeat)
    assert 0 < sum(stage == "score" for stage, *_ in client.calls) <= len(played)


def test_clients_that_cannot_overlap_are_called_in_turn_from_this_thread():
    engine = FakeEngine(scripted_rewrites)  # no concurrent_jobs: an in-process engine
    client = TimedClient(engine)
    played = []
    results = run_rounds(
        make_runs(4),
        rewriter=client,
        scorer=client,
        cohorts=2,
        on_round=lambda index, advanced, stats: played.append(len(advanced)),
    )
    assert [comparable(r) for r in results] == baseline(4)
    assert not client.overlapped()
    assert played[0] == 4  # run in turn, halves would only make smaller batches: one cohort


def test_an_engine_error_in_one_cohort_ends_the_run_after_the_other_job_returns():
    class Failing(FakeEngine):
        concurrent_jobs = True

        def score(self, requests, with_token_logprobs=False):
            if len(self.score_calls) == 2:
                raise RuntimeError("engine lost")
            return super().score(requests)

    engine = Failing(scripted_rewrites)
    with pytest.raises(RuntimeError, match="engine lost"):
        run_rounds(make_runs(4), rewriter=engine, scorer=engine, cohorts=2)


@pytest.mark.ray
@pytest.mark.parametrize("separate_rewriter", [True, False])
def test_on_ray_pools_overlap_and_results_match(local_ray, separate_rewriter):
    """Real Ray Data jobs over fake-engine replica pools (0.2 s per call): with a rewriter pool
    of its own, generation of one cohort runs while the other scores; with one shared pool, both
    jobs share its replicas. Either way the results are those of one cohort in process."""
    replicas = ReplicaConfig(num_replicas=1, num_cpus=0, batch_rows=8)
    scorer = ReplicaPool.start(VllmConfig(), replicas, replica_class=QuickFakeReplica)
    rewriter = None
    if separate_rewriter:
        rewriter = ReplicaPool.start(VllmConfig(), replicas, replica_class=QuickFakeReplica)
    client = RayDataClient(scorer, rewriter)
    try:
        timed = TimedClient(client)
        results = run_rounds(make_runs(4), rewriter=timed, scorer=timed, cohorts=2)
        assert [comparable(r) for r in results] == baseline(4)
        assert timed.overlapped()
        totals = client.stats()
        assert set(totals) == ({"scorer", "rewriter"} if separate_rewriter else {"scorer"})
        assert all(pool["calls"] > 0 for pool in totals.values())
    finally:
        client.close()


@pytest.mark.ray
def test_counting_tokens_does_not_wait_for_a_replicas_engine_call(local_ray):
    """The driver counts each task's rewrites while the other cohort scores on the same
    replica: the count runs beside the engine call, not after it."""
    import threading
    import time

    from tests.failures import scoring_table
    from tests.fakes import StalledFakeReplica

    replicas = ReplicaConfig(num_replicas=1, num_cpus=0, batch_rows=64)
    pool = ReplicaPool.start(VllmConfig(), replicas, replica_class=StalledFakeReplica)
    client = RayDataClient(pool)
    try:
        scoring = threading.Thread(target=client.score, args=(scoring_table(1),))
        scoring.start()
        while local_ray.get(pool.dispatcher.in_flight_counts.remote())[0] == 0:
            time.sleep(0.05)  # until a batch is lent to the replica (3 s per call)
        time.sleep(0.3)  # and has reached it
        assert client.count_tokens(["three words here"]) == [3]
        # answered while that call still runs: no engine call has finished yet
        assert client.stats()["scorer"]["calls"] == 0
        assert scoring.is_alive()
        scoring.join()
        assert client.stats()["scorer"]["calls"] >= 1
    finally:
        client.close()
