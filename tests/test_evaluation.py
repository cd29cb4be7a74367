"""Held-out evaluation of real run folders (optimized against the scripted engine): every named
prompt measured, answers graded, each task in one scoring and one generation call."""

import json

import pyarrow.parquet as pq
import pytest

from pmpo_ray.evaluation.evaluate_run import evaluate_run, with_overrides
from pmpo_ray.jobs import OptimizeJobConfig, SuiteConfig, task_job_config
from pmpo_ray.pmpo.rounds import run_rounds
from pmpo_ray.pmpo.task_run import TaskRun
from pmpo_ray.run_folder.from_results import run_folder_from_results
from pmpo_ray.run_folder.read import read_run_folder
from pmpo_ray.run_folder.write import write_suite_summary, write_suite_tasks, write_task_run
from pmpo_ray.tasks.task import load_task
from tests.fakes import FakeEngine, scripted_rewrites

NAVIGATE = {
    "name": "navigate",
    "data": "builtin:bbh/navigate.json",
    "format": "multiple_choice",
    "initial_prompt": "Answer.",
    "max_train": 6,
}
PAIRS = {
    "name": "pairs",
    "data": "builtin:alpaca_eval/pairs_short.jsonl",
    "format": "preference",
    "initial_prompt": "Be helpful.",
    "max_train": 4,
}
OPTIMIZER = {"iterations": 1, "hard_cases": 1, "rewrites_per_case": 2}


def answers_yes_when_careful(context, seed, index):
    """Rewrites as usual; held-out answers 'Yes' under a prompt containing 'carefully'."""
    if "<prompt>" in context or "<mask>" in context:
        return scripted_rewrites(context, seed, index)
    return "Let me see. So the answer is Yes." if "carefully" in context else "Hmm, not sure"


def optimized(config: OptimizeJobConfig, engine):
    run = TaskRun(
        load_task(config.task), config.optimizer, engine.count_tokens, config.prompt_format
    )
    [result] = run_rounds([run], rewriter=engine, scorer=engine)
    return result


@pytest.fixture
def task_run_dir(tmp_path):
    config = OptimizeJobConfig.model_validate(
        {"task": NAVIGATE, "optimizer": OPTIMIZER, "evaluation": {"max_examples": 10}}
    )
    result = optimized(config, FakeEngine(answers_yes_when_careful))
    assert "carefully" in result.best.text  # the scripted engine rewards this word
    write_task_run(result, tmp_path / "run", config)
    return tmp_path / "run"


def test_single_task_run_evaluates_every_prompt(task_run_dir):
    engine = FakeEngine(answers_yes_when_careful)
    folder = read_run_folder(task_run_dir)
    [result] = evaluate_run(folder, engines=engine).values()

    heldout = load_task(folder.tasks[0].config.task).test[:10]
    rows = {row["name"]: row for row in result["prompts"]}
    assert set(rows) == {"initial", "optimized", "no_instruction", "step_by_step"}
    assert result["n_heldout"] == 10 and result["answer_match"] == "option"
    assert rows["optimized"]["heldout_ce"] < rows["initial"]["heldout_ce"]
    share_yes = sum(e.target == "Yes" for e in heldout) / len(heldout)
    assert rows["optimized"]["accuracy"] == pytest.approx(share_yes)
    assert rows["initial"]["accuracy"] == 0.0  # "not sure" names no option: never a guess
    assert rows["optimized"]["pairwise_accuracy"] is not None  # Yes/No distractor scored
    # Option accuracy from the same pass: the fake engine charges "Yes" and "No" alike (one
    # word each), a tie at the top, which counts as wrong; per character "Yes" costs less.
    assert all(row["option_accuracy"] == 0.0 for row in rows.values())
    norm = [row["option_accuracy_norm"] for row in rows.values()]
    assert norm == pytest.approx([share_yes] * 4)
    # four names, four distinct texts: every prompt scored (target + 1 distractor) and answered
    assert engine.score_calls == [4 * 10 * 2] and engine.generate_calls == [4 * 10]

    predictions = pq.read_table(task_run_dir / "predictions.parquet").to_pylist()
    assert len(predictions) == 4 * 10
    optimized = [p for p in predictions if p["prompt_name"] == "optimized"]
    assert all(p["extracted"] == "Yes" for p in optimized)
    assert [p["correct"] for p in optimized] == [e.target == "Yes" for e in heldout]

    saved = json.loads((task_run_dir / "evaluation.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert all("option_accuracy_norm" in row for row in saved["prompts"])
    counterfactual = saved["generation_counterfactual"]
    assert counterfactual["candidates_scored"] == 1 + 2  # initial + two rewrites
    mean_tokens = rows["optimized"]["tokens_generated"] / 10
    assert counterfactual["generated_tokens"] == round(3 * saved["n_train"] * mean_tokens)


@pytest.mark.parametrize("source", ["files", "memory"])
def test_suite_tasks_each_take_one_scoring_and_one_generation_call(tmp_path, source):
    """The same evaluation from the folder read back and from the results in memory (what the
    suite job does right after writing)."""
    config = SuiteConfig.model_validate(
        {
            "name": "two",
            "optimizer": OPTIMIZER,
            "tasks": [{"task": NAVIGATE}, {"task": PAIRS}],
            "evaluation": {"max_examples": 6, "baselines": {"terse": "Be brief."}},
        }
    )
    jobs = [task_job_config(config, entry) for entry in config.tasks]
    engine = FakeEngine(answers_yes_when_careful)
    runs = [
        TaskRun(load_task(job.task), job.optimizer, engine.count_tokens, job.prompt_format)
        for job in jobs
    ]
    results = run_rounds(runs, rewriter=engine, scorer=engine)
    out = tmp_path / "suite"
    write_suite_tasks(out, results, jobs)
    write_suite_summary(out, config.model_dump(mode="json"), results)

    engine = FakeEngine(answers_yes_when_careful)
    if source == "files":
        folder = read_run_folder(out)
    else:
        folder = run_folder_from_results(out, results, jobs)
    results = evaluate_run(folder, engines=engine)
    assert len(engine.score_calls) == 2  # task by task, so a failure keeps finished tasks
    assert engine.generate_calls == [3 * 6]  # navigate only: preference pairs are not generated
    pairs = {row["name"]: row for row in results["pairs"]["prompts"]}
    assert set(pairs) == {"initial", "optimized", "terse"}
    assert all(row["accuracy"] is None for row in pairs.values())
    assert all(0.0 <= row["pairwise_accuracy"] <= 1.0 for row in pairs.values())
    assert all(row["option_accuracy"] is None for row in pairs.values())  # no options
    navigate = results["navigate"]["prompts"]
    assert all(row["option_accuracy"] is not None for row in navigate)
    assert results["pairs"]["answer_match"] == "none"
    for task_id in ("navigate", "pairs"):
        assert (tmp_path / "suite" / "tasks" / task_id / "evaluation.json").is_file()


def test_overrides_and_bad_folders(tmp_path, task_run_dir):
    folder = read_run_folder(task_run_dir)
    config = with_overrides(folder.evaluation, max_examples=None, accuracy=False)
    assert config.max_examples == 10 and config.accuracy is False
    with pytest.raises(ValueError, match="no such run folder"):
        read_run_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a run folder"):
        read_run_folder(tmp_path / "empty")
    (task_run_dir / "history.parquet").unlink()
    with pytest.raises(ValueError, match="missing history.parquet"):
        read_run_folder(task_run_dir)


@pytest.mark.engine
def test_pmpo_evaluate_command_with_the_real_model(tmp_path, capsys):
    """`pmpo evaluate` builds the run's own engine (transformers here, for a quick start)."""
    from pmpo_ray.cli import main

    config = OptimizeJobConfig.model_validate(
        {"task": NAVIGATE, "optimizer": OPTIMIZER, "scorer": {"engine": {"backend": "hf"}}}
    )
    result = optimized(config, FakeEngine(answers_yes_when_careful))
    write_task_run(result, tmp_path / "run", config)

    argv = ["evaluate", str(tmp_path / "run"), "--max-examples", "3", "--max-answer-tokens", "8"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "navigate" in printed and "optimized" in printed
    evaluation = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    rows = {row["name"]: row for row in evaluation["prompts"]}
    assert evaluation["n_heldout"] == 3
    assert all(0 < row["heldout_ce"] < 20 and 0 <= row["accuracy"] <= 1 for row in rows.values())
    assert rows["optimized"]["heldout_ce"] != rows["initial"]["heldout_ce"]
    assert all(0 < row["tokens_generated"] <= 3 * 8 for row in rows.values())


def test_supervised_aqua_grades_the_option_not_the_rationale():
    """AQuA in supervised form scores the rationale but checks the label it ends with."""
    import pyarrow as pa

    from pmpo_ray.evaluation.heldout import EvalPrompt, EvalTask, grade_answers
    from pmpo_ray.requests import GENERATE_RESULT_SCHEMA
    from pmpo_ray.tasks.config import TaskConfig

    task = load_task(
        TaskConfig(
            name="aqua",
            data="builtin:aqua/sample.jsonl",
            format="supervised",
            initial_prompt="Solve it.",
        )
    )
    assert task.answer_match == "option"
    example = task.test[0]
    assert example.gold_answer != example.target  # the label, not the rationale
    wrong = "(A)" if example.gold_answer != "(A)" else "(B)"
    outputs = [f"Work. The answer is {example.gold_answer}.", f"So the answer is {wrong}."]
    generated = pa.Table.from_pylist(
        [
            {"request_id": i, "sample_index": 0, "text": t, "n_tokens": 5, "finish_reason": "stop"}
            for i, t in enumerate(outputs)
        ],
        schema=GENERATE_RESULT_SCHEMA,
    )
    eval_task = EvalTask(
        "aqua",
        "supervised",
        "option",
        (example,),
        (EvalPrompt("initial", "Solve it."),),
        "ce",
        "mean",
        1.0,
    )
    graded = grade_answers(eval_task, [("p0", example), ("p1", example)], generated)
    assert [g["correct"] for g in graded["p0"] + graded["p1"]] == [True, False]
