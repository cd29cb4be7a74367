"""The ablation study: variants and their expansion, the proposals and budget the variants
run on, and a whole study on simulated replicas in a real local Ray."""

import json

import pytest

from pmpo_ray.config import as_config
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.pmpo.proposals import chosen_cases, proposal_message
from pmpo_ray.pmpo.select import hard_cases
from pmpo_ray.studies.config import StudyConfig
from pmpo_ray.studies.variants import VARIANTS, expand
from pmpo_ray.tasks.example import Example
from tests.fakes import FakeEngine, scripted_rewrites
from tests.test_optimizer_loop import make_task, optimize_toy

PROMPT = "Answer the question. Give only the answer."


def study_config(budget=120, variants=None, **suite):
    tasks = [
        {
            "task": {
                "name": "navigate",
                "data": "builtin:bbh/navigate.json",
                "format": "multiple_choice",
                "initial_prompt": PROMPT,
                "max_train": 4,
            }
        },
        {
            "task": {
                "name": "sports",
                "data": "builtin:bbh/sports_understanding.json",
                "format": "supervised",
                "initial_prompt": PROMPT,
                "max_train": 4,
            }
        },
    ]
    raw = {
        "forward_pass_budget": budget,
        "suite": {
            "name": "study",
            "tasks": tasks,
            "optimizer": {"iterations": 20, "hard_cases": 2, "rewrites_per_case": 2},
            **suite,
        },
    }
    if variants:
        raw["variants"] = variants
    return as_config(StudyConfig, raw)


def test_variants_that_cannot_differ_on_a_task_run_once():
    config = study_config()
    suite, plan = expand(config.suite, config.variants, config.seeds, 120)
    by_cell = {(r.task, r.variant, r.seed): r for r in plan}
    assert len(plan) == 2 * len(VARIANTS) * 2
    # sports has no distractors: both objective variants are full PMPO's run
    for variant in ("no_preference", "ce_plus_preference"):
        assert by_cell["sports", variant, 0].same_as == "full"
        assert by_cell["sports", variant, 0].run_name == "sports.full.s0"
    assert all(r.same_as is None for r in plan if r.task == "navigate")
    names = [entry.task.name for entry in suite.tasks]
    assert len(names) == len(set(names)) == len(plan) - 2 * 2
    optimizers = {entry.task.name: entry.optimizer for entry in suite.tasks}
    assert optimizers["navigate.full.s1"].objective == "preference"
    assert optimizers["navigate.full.s1"].seed == 1
    assert optimizers["navigate.no_preference.s0"].objective == "ce"
    assert optimizers["navigate.ce_plus_preference.s0"].objective == "ce_plus_preference"
    assert optimizers["sports.full.s0"].objective == "ce"
    assert not optimizers["navigate.no_masking.s0"].masks_prompts
    assert optimizers["navigate.random_cases.s0"].case_selection == "random"
    assert optimizers["navigate.ape.s0"].proposal == "ape"
    assert not optimizers["navigate.ape.s0"].masks_prompts
    assert optimizers["navigate.random_rewrites.s0"].proposal == "paraphrase"
    assert {o.max_forward_passes for o in optimizers.values()} == {120}


def test_a_study_config_names_what_is_wrong():
    with pytest.raises(ValueError, match=r"unknown variant\(s\) \['no_mask'\]"):
        study_config(variants=["full", "no_mask"])
    with pytest.raises(ValueError, match="seeds"):
        as_config(StudyConfig, {**study_config().model_dump(), "seeds": [0]})


def test_random_cases_are_drawn_per_seed_and_iteration():
    losses = {str(i): float(i) for i in range(10)}
    hardest = OptimizerConfig(hard_cases=3)
    assert chosen_cases(hardest, losses, iteration=0, parent_id="init") == hard_cases(losses, 3)
    draws = {
        (seed, iteration): chosen_cases(
            OptimizerConfig(hard_cases=3, case_selection="random", seed=seed),
            losses,
            iteration=iteration,
            parent_id="init",
        )
        for seed in (0, 1)
        for iteration in (0, 1)
    }
    assert all(len(set(d)) == 3 and set(d) <= set(losses) for d in draws.values())
    assert len({tuple(d) for d in draws.values()}) > 1  # not one fixed draw
    again = OptimizerConfig(hard_cases=3, case_selection="random", seed=0)
    assert chosen_cases(again, losses, iteration=1, parent_id="init") == draws[0, 1]


def test_each_proposal_asks_for_what_its_variant_measures():
    train = tuple(Example(str(i), f"input number {i}", f"answer {i}") for i in range(6))
    asked = {
        proposal: proposal_message(
            OptimizerConfig(proposal=proposal, demonstrations=3),
            task_description="count things",
            case=train[2],
            train=train,
            analysis="unit 1 helps",
            current_prompt="Count carefully.",
            request_seed=7,
        )
        for proposal in ("pmpo", "ape", "paraphrase")
    }
    assert "unit 1 helps" in asked["pmpo"] and "input number 2" in asked["pmpo"]
    assert asked["ape"].count("Input: ") == 3 and "Output: answer 2" in asked["ape"]
    assert "Count carefully." not in asked["ape"] and "unit 1 helps" not in asked["ape"]
    assert "Count carefully." in asked["paraphrase"]
    assert "input number" not in asked["paraphrase"] and "unit 1" not in asked["paraphrase"]


def test_ape_and_paraphrase_runs_never_segment_and_still_improve():
    for proposal in ("ape", "paraphrase"):
        engine = FakeEngine(scripted_rewrites)
        result = optimize_toy(make_task(), engine, proposal=proposal)
        assert not any("<mask>" in row["input"] for row in engine.requests), proposal
        assert all(a.method == "none" for r in result.history for a in r.masking_results), proposal
        assert result.best.loss < result.initial.loss, proposal


def fresh_rewrites(context, seed, index):
    """A new prompt for every request, so every iteration costs scoring rows."""
    if "<mask>" in context and "<prompt>" not in context:
        return "<mask>Think.</mask>"
    return f"<prompt>Read carefully {seed}-{index}.</prompt>"


def test_a_forward_pass_budget_ends_the_run_nearest_it():
    settings = {"iterations": 12, "hard_cases": 1, "rewrites_per_case": 1}
    unlimited = optimize_toy(make_task(), FakeEngine(fresh_rewrites), **settings)
    assert len(unlimited.history) == 12 and unlimited.work.forward_passes > 80
    result = optimize_toy(
        make_task(), FakeEngine(fresh_rewrites), max_forward_passes=40, **settings
    )
    assert result.stop_reason == "forward-pass budget: 42 of 40 spent"
    assert len(result.history) == 4  # costs 18, 12, 6, 6: a fifth would end at 48, not 42
    last = result.history[-1].work.forward_passes
    assert abs(result.work.forward_passes - 40) <= last / 2


def test_ce_plus_preference_is_the_sum_of_both_losses():
    import pyarrow as pa

    from pmpo_ray.pmpo.loss import example_losses

    scored = pa.Table.from_pylist(
        [
            {
                "candidate_id": "c",
                "example_id": "e",
                "weight": 1.0,
                "logprob_sum": -2.0,
                "n_tokens": 2,
            },
            {
                "candidate_id": "c",
                "example_id": "e",
                "weight": -1.0,
                "logprob_sum": -3.0,
                "n_tokens": 1,
            },
        ]
    )
    [ce, pref, both] = [
        example_losses(scored, objective=o)["c"]["e"]
        for o in ("ce", "preference", "ce_plus_preference")
    ]
    assert ce == pytest.approx(1.0)
    assert both == pytest.approx(ce + pref) and pref > 0


@pytest.mark.ray
def test_a_study_on_simulated_replicas_writes_every_cell_and_resumes(
    local_ray, tmp_path, monkeypatch
):
    from pmpo_ray.studies import run as run_module
    from pmpo_ray.studies.run import run_study

    pool = {"engine": {"backend": "simulated"}, "replicas": {"num_cpus": 0}}
    config = study_config(
        budget=60,
        scorer=pool,
        evaluation={"max_examples": 6, "max_answer_tokens": 8},
    )
    result = run_study(config, out=tmp_path / "study")
    rows = [
        json.loads(line) for line in (tmp_path / "study/results.jsonl").read_text().splitlines()
    ]
    assert rows == list(result.rows)
    assert len(rows) == 2 * (1 + len(VARIANTS) * 2)  # per task: initial + variants x seeds
    for row in rows:
        assert row["heldout_ce"] > 0, row
        assert (row["option_accuracy"] is None) == (row["format"] == "supervised"), row
        if row["variant"] != "initial":
            assert 0 < row["forward_passes"] <= 60 * 1.5, row
    copies = [r for r in rows if r["same_as"]]
    assert {(r["task"], r["variant"]) for r in copies} == {
        ("sports", "no_preference"),
        ("sports", "ce_plus_preference"),
    }
    full = {r["seed"]: r for r in rows if r["task"] == "sports" and r["variant"] == "full"}
    assert all(r["prompt"] == full[r["seed"]]["prompt"] for r in copies)
    markdown = result.report[0].read_text()
    assert "navigate" in markdown and "random_rewrites" in markdown
    with pytest.raises(ValueError, match="holds a study already"):  # nothing is replaced
        run_study(config, out=tmp_path / "study")
    # Every row keeps its per-example figures, aligned over the task's held-out examples.
    for row in rows:
        per_example = row["per_example"]
        assert len(per_example["heldout_ce"]) == 6
        assert sum(per_example["heldout_ce"]) / 6 == pytest.approx(row["heldout_ce"])
    # Finished runs are not played again, and every final prompt is in the evaluation cache:
    # the resumed study starts no engine at all.
    rounds = (tmp_path / "study/runs/rounds.jsonl").read_text()
    monkeypatch.setattr(run_module, "suite_engines", no_engines)
    again = run_study(config, out=tmp_path / "study", resume=True)
    assert (tmp_path / "study/runs/rounds.jsonl").read_text() == rounds
    assert list(again.rows) == rows
    # Without the cache, the resumed study evaluates again (on engines) to the same rows.
    monkeypatch.undo()
    monkeypatch.setenv("PMPO_RAY_CACHE", "off")
    assert list(run_study(config, out=tmp_path / "study", resume=True).rows) == rows


def no_engines(*_, **__):
    raise AssertionError("a study whose prompts are all cached started engines")


@pytest.mark.parametrize("command", ["pipelines.study", "pmpo study"])
def test_the_study_entrypoint_refuses_a_bad_config_before_ray(
    command, tmp_path, capsys, monkeypatch
):
    import yaml

    import pmpo_ray.api
    from pipelines.study import main as pipeline_main
    from pmpo_ray.cli import main as pmpo_main

    def never(*args, **kwargs):
        raise AssertionError("the study started (Ray, engines) on a bad config")

    monkeypatch.setattr(pmpo_ray.api, "run_study", never)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study_config().model_dump(mode="json")))
    options = ["--out", str(tmp_path / "out"), "--set", "variants=[full, no_mask]"]
    if command == "pmpo study":
        assert pmpo_main(["study", str(path), *options]) == 2
    else:
        assert pipeline_main(["--config", str(path), *options]) == 2
    assert "unknown variant(s) ['no_mask']" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
