"""The optimizer's explicit steps (analyze, rewrite, which round next) on hand-built states, and
the generic checkpoint: JSON in and out, NaN losses and tuples intact, a resumed run identical."""

from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import pyarrow as pa
import pytest

from pmpo_ray.config import PromptFormat
from pmpo_ray.pmpo import masking, task_run
from pmpo_ray.pmpo.checkpoint import restore, snapshot
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.pmpo.masking_step import MaskingStep
from pmpo_ray.pmpo.next_round import after_iteration, stale_iterations
from pmpo_ray.pmpo.records import IterationRecord, MaskingResult, RejectedRewrite, Work
from pmpo_ray.pmpo.rewrite_step import RewriteStep
from pmpo_ray.pmpo.run_state import INITIAL_ID, Phase, RunState
from pmpo_ray.pmpo.select import Candidate
from pmpo_ray.requests import GENERATE_RESULT_SCHEMA
from pmpo_ray.tasks.example import Example
from pmpo_ray.tasks.task import Task
from tests.fakes import FakeEngine

PROMPT = "Think. Be exact."


def make_task(n_train=4) -> Task:
    train = tuple(Example(str(i), f"question {i}", "the answer " * (i + 1)) for i in range(n_train))
    return Task("toy", "supervised", "answer questions", PROMPT, train, ())


def word_count(texts):
    return [len(text.split()) for text in texts]


def analyzed_state(losses=(1.0, 3.0, 2.0, 4.0)) -> RunState:
    """A state right after the first analyze round: the initial prompt scored and analyzed."""
    initial = Candidate(INITIAL_ID, PROMPT, sum(losses) / len(losses), None, 0)
    return RunState(
        phase=Phase.REWRITE,
        initial=initial,
        population=(initial,),
        example_losses={INITIAL_ID: {str(i): loss for i, loss in enumerate(losses)}},
        masking_results={
            INITIAL_ID: MaskingResult(INITIAL_ID, "model", "", (PROMPT,), (0.5,), "- helps")
        },
        scored_texts=frozenset({PROMPT}),
    )


def assert_same(a, b, where="state"):
    """Equal values of the exact same types, all the way down; NaN equals NaN."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys differ"
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), f"{where}: {b} is not NaN"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# ----- the analyze step -----------------------------------------------------------------------


def test_analyze_step_segments_masks_and_analyzes_the_initial_prompt():
    config = OptimizerConfig(iterations=1, hard_cases=2, max_units=3)
    step = MaskingStep(make_task(), config)
    state = RunState(scored_texts=frozenset({PROMPT}))

    plan = step.plan_generation(state)
    assert plan.candidate_of == {0: INITIAL_ID}
    [row] = plan.rows
    assert row["input"] == masking.segmentation_request(PROMPT, 3)
    assert (row["prompt"], row["role"], row["n"], row["temperature"], row["top_p"]) == (
        "",
        "user",
        1,
        0.0,
        1.0,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.rows = ()

    ablating = step.take_generations(
        state, plan, {0: ["<mask>Think.</mask> <mask>Be exact.</mask>"]}
    )
    assert ablating.prompts == (
        (INITIAL_ID, PROMPT),
        ("init~mask0", "<MASK> Be exact."),
        ("init~mask1", "Think. <MASK>"),
    )
    assert ablating.segmentations[INITIAL_ID].method == "model"

    losses = {INITIAL_ID: {"0": 1.0, "1": 3.0}, "init~mask0": {"0": 3.0, "1": 3.0}}
    losses["init~mask1"] = {"0": 1.0, "1": 2.0}
    done = step.take_scores(dataclasses.replace(state, example_losses=losses), ablating)
    assert done.initial == Candidate(INITIAL_ID, PROMPT, 2.0, None, 0)
    assert done.population == (done.initial,)
    analysis = done.masking_results[INITIAL_ID]
    assert analysis.units == ("Think.", "Be exact.") and analysis.deltas == (1.0, -0.5)
    assert done.phase is Phase.REWRITE and done.stop_reason == ""


def test_analyze_step_without_masking_or_iterations():
    config = OptimizerConfig(iterations=0, hard_cases=2, use_masking=False)
    step = MaskingStep(make_task(), config)
    state = RunState()
    plan = step.plan_generation(state)
    assert plan.rows == () and plan.candidate_of == {}
    ablating = step.take_generations(state, plan, {})
    assert ablating.prompts == ((INITIAL_ID, PROMPT),)  # the initial prompt is scored anyway
    scored = dataclasses.replace(state, example_losses={INITIAL_ID: {"0": 1.0}})
    done = step.take_scores(scored, ablating)
    assert done.masking_results[INITIAL_ID].text == "(mask analysis disabled)"
    assert (done.phase, done.stop_reason) == (Phase.DONE, "no iterations configured")


# ----- the rewrite step -----------------------------------------------------------------------


def test_rewrite_step_asks_from_the_hardest_cases_with_fixed_seeds():
    config = OptimizerConfig(hard_cases=2, rewrites_per_case=3, seed=3, meta_prompt="short")
    step = RewriteStep(make_task(), config, word_count, lap=lambda: 0.0)
    plan = step.plan_generation(analyzed_state())
    assert plan.hard_cases == {INITIAL_ID: ("3", "1")}
    assert plan.asked == {0: (INITIAL_ID, "3"), 1: (INITIAL_ID, "1")}
    assert [row["seed"] for row in plan.rows] == [3 * 1_000_003 + 1_000, 3 * 1_000_003 + 1_001]
    assert all(row["n"] == 3 and row["prefill"] == "<prompt>" for row in plan.rows)
    assert "question 3" in plan.rows[0]["input"]


def test_rewrite_step_vets_names_and_selects():
    config = OptimizerConfig(hard_cases=2, max_prompt_tokens=4, iterations=3)
    step = RewriteStep(make_task(), config, word_count, lap=lambda: 2.5)
    state = analyzed_state().counted(forward_passes=8)
    plan = step.plan_generation(state)
    outputs = {
        0: [
            "no tag",
            "<prompt></prompt>",
            f"<prompt>{PROMPT}</prompt>",
            "<prompt>Answer carefully.</prompt>",
        ],
        1: [
            "<prompt>Answer carefully.</prompt>",
            "<prompt>far too many words for this prompt</prompt>",
            "<prompt>Be brief.</prompt>",
        ],
    }
    variants = step.take_generations(state, plan, outputs)
    assert variants.prompts == (("t1-c0", "Answer carefully."), ("t1-c1", "Be brief."))
    assert variants.hard_case_of == {"t1-c0": "3", "t1-c1": "1"}
    reasons = [(r.example_id, r.reason) for r in variants.rejected]
    assert reasons == [
        ("3", "no_prompt_tag"),
        ("3", "empty"),
        ("3", "unchanged"),
        ("1", "duplicate"),  # already accepted from request 0 this round
        ("1", "too_long"),
    ]

    losses = {"t1-c0": {"0": 1.0, "1": 1.0}, "t1-c1": {"0": 9.0, "1": float("nan")}}
    scored = dataclasses.replace(state, example_losses={**state.example_losses, **losses})
    after = step.take_scores(scored, variants)
    assert [c.candidate_id for c in after.population] == ["t1-c0"]
    assert after.lineage == {INITIAL_ID: None, "t1-c0": INITIAL_ID, "t1-c1": INITIAL_ID}
    assert after.scored_texts == {PROMPT, "Answer carefully.", "Be brief."}
    [record] = after.history
    assert record.improved and record.best_loss == 1.0
    assert [c.candidate_id for c in record.candidates] == [INITIAL_ID, "t1-c0", "t1-c1"]
    assert math.isnan(record.candidates[2].loss)
    assert record.work == Work(forward_passes=8, wall_seconds=2.5)
    assert after.iteration_work == Work() and after.work == record.work
    # The new incumbent has no analysis yet, so the next round analyzes it.
    assert after.phase is Phase.MASK


# ----- which round next -----------------------------------------------------------------------


def record(iteration: int, improved: bool) -> IterationRecord:
    return IterationRecord(
        iteration, (INITIAL_ID,), {}, (), (), {}, (), (INITIAL_ID,), 1.0, improved, Work()
    )


@pytest.mark.parametrize(
    "improved, config, phase, reason",
    [
        ([True, False], OptimizerConfig(iterations=2), Phase.DONE, "iteration limit reached"),
        (
            [True, False, False],
            OptimizerConfig(iterations=9, patience=2),
            Phase.DONE,
            "no improvement in 2 iterations",
        ),
        ([False, True], OptimizerConfig(iterations=9, patience=2), Phase.REWRITE, ""),
    ],
)
def test_after_iteration_stops_or_goes_on(improved, config, phase, reason):
    state = dataclasses.replace(
        analyzed_state(), history=tuple(record(i + 1, up) for i, up in enumerate(improved))
    )
    after = after_iteration(state, config, PROMPT)
    assert (after.phase, after.stop_reason) == (phase, reason)


def test_stale_iterations_counts_since_the_last_improvement():
    state = RunState(history=(record(1, True), record(2, False), record(3, False)))
    assert stale_iterations(state) == 2
    assert stale_iterations(RunState(history=(record(1, False),))) == 1


# ----- the run and its checkpoint ------------------------------------------------------------


class NaNEngine(FakeEngine):
    """A FakeEngine that cannot score prompts saying "never": their losses are NaN."""

    def score(self, requests, with_token_logprobs=False):
        scored = super().score(requests)
        logprobs = [
            math.nan if "never" in prompt else logprob
            for prompt, logprob in zip(
                requests.column("prompt").to_pylist(), scored.column("logprob_sum").to_pylist()
            )
        ]
        index = scored.schema.get_field_index("logprob_sum")
        return scored.set_column(index, "logprob_sum", pa.array(logprobs, pa.float64()))


def respond(context, seed, index):
    if "<mask>" in context and "<prompt>" not in context:
        return "<mask>Think.</mask>"
    if index == 1:
        return "<prompt>This never scores.</prompt>"
    return f"Analysis. <prompt>Read carefully {seed % 1000}-{index}.</prompt>"


CONFIG = OptimizerConfig(iterations=4, hard_cases=2, rewrites_per_case=2, population_size=2)


def play_round(run, engine, log) -> None:
    plan = run.plan_generation()
    log.append(plan.to_pylist())
    run.take_generations(
        engine.generate(plan) if plan.num_rows else GENERATE_RESULT_SCHEMA.empty_table()
    )
    requests = run.plan_scoring()
    log.append(requests.to_pylist())
    run.take_scores(engine.score(requests) if requests.num_rows else requests)


@pytest.fixture
def frozen_clock(monkeypatch):
    """Wall times are the only thing two identical runs may differ in; stop the clock."""
    monkeypatch.setattr(task_run, "time", SimpleNamespace(perf_counter=lambda: 0.0))


def test_the_state_is_json_with_plain_phase_names_and_nan_losses(frozen_clock):
    engine = NaNEngine(respond)
    run = task_run.TaskRun(make_task(), CONFIG, engine.count_tokens, PromptFormat())
    log = []
    while run.history == ():
        play_round(run, engine, log)
    text = json.dumps(snapshot(run))
    data = json.loads(text)
    assert data["task_id"] == "toy" and data["phase"] in ("mask", "rewrite")
    assert data["scored_texts"] == sorted(data["scored_texts"])
    assert any(math.isnan(c["loss"]) for c in data["history"][0]["candidates"])
    fresh = task_run.TaskRun(make_task(), CONFIG, engine.count_tokens, PromptFormat())
    restore(fresh, data)
    assert_same(fresh.state, run.state)
    assert isinstance(fresh.state.phase, Phase)


def test_a_run_stopped_midway_finishes_like_one_never_stopped(frozen_clock):
    def build():
        return task_run.TaskRun(
            make_task(), CONFIG, NaNEngine(respond).count_tokens, PromptFormat()
        )

    whole, whole_log = build(), []
    while not whole.done:
        play_round(whole, NaNEngine(respond), whole_log)
    assert len(whole.history) == CONFIG.iterations
    assert any(math.isnan(c.loss) for r in whole.history for c in r.candidates)

    first, first_log = build(), []
    for _ in range(3):
        play_round(first, NaNEngine(respond), first_log)
    saved = json.dumps(snapshot(first))  # what a suite writes to disk
    resumed, resumed_log = build(), []
    restore(resumed, json.loads(saved))
    assert_same(resumed.state, first.state)
    while not resumed.done:
        play_round(resumed, NaNEngine(respond), resumed_log)

    assert first_log + resumed_log == whole_log  # same requests, ids, seeds and prompts
    assert_same(resumed.state, whole.state)
    assert_same(resumed.result(), whole.result())


def test_rounds_keep_nothing_on_the_run_between_calls():
    engine = NaNEngine(respond)
    run = task_run.TaskRun(make_task(), CONFIG, engine.count_tokens, PromptFormat())
    attributes = set(vars(run))
    play_round(run, engine, [])
    play_round(run, engine, [])
    assert set(vars(run)) == attributes and run._pending is None
    # Only the prompts a later round reads keep their per-example losses.
    assert set(run.state.example_losses) == {INITIAL_ID} | {c.candidate_id for c in run.population}


def test_restore_refuses_another_task_or_a_partial_state():
    engine = NaNEngine(respond)
    run = task_run.TaskRun(make_task(), CONFIG, engine.count_tokens, PromptFormat())
    play_round(run, engine, [])
    data = snapshot(run)
    with pytest.raises(ValueError, match="checkpoint of task 'other' cannot resume task 'toy'"):
        restore(run, {**data, "task_id": "other"})
    partial = {key: value for key, value in data.items() if key != "lineage"}
    with pytest.raises(ValueError, match="field\\(s\\) lineage missing"):
        restore(run, partial)


def test_rejected_rewrites_and_records_round_trip_as_tuples():
    state = dataclasses.replace(
        analyzed_state((1.0, math.nan, 2.0, 4.0)),
        history=(
            dataclasses.replace(
                record(1, False),
                hard_cases={INITIAL_ID: ("1", "3")},
                rejected=(RejectedRewrite(INITIAL_ID, "1", "empty", "<prompt></prompt>"),),
                best_loss=math.nan,
            ),
        ),
    )
    run = task_run.TaskRun(make_task(), CONFIG, word_count, PromptFormat())
    run.state = state
    back = task_run.TaskRun(make_task(), CONFIG, word_count, PromptFormat())
    restore(back, json.loads(json.dumps(snapshot(run))))
    assert_same(back.state, state)
