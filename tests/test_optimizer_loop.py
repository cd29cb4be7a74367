"""The PMPO loop's logic with a scripted engine: selection, records, budgets, bad input."""

import math

import pytest

from pmpo_ray import optimize
from pmpo_ray.config import PromptFormat
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.pmpo.rounds import run_rounds
from pmpo_ray.pmpo.task_run import TaskRun
from pmpo_ray.tasks.config import TaskConfig
from pmpo_ray.tasks.example import Example
from pmpo_ray.tasks.formats import DataError
from pmpo_ray.tasks.task import Task, load_task
from tests.fakes import FakeEngine, scripted_rewrites


def make_task(n_train=6, task_id="toy", fmt="supervised", rejected=()):
    train = tuple(
        Example(str(i), f"question {i}", "the answer " * (i + 1), rejected) for i in range(n_train)
    )
    test = (Example("t0", "held out", "answer", rejected),)
    return Task(task_id, fmt, "answer questions", "Think.", train, test)


def optimize_toy(task, engine, **overrides):
    """The public API on a fake engine client: no model, no tokenizer."""
    return optimize(
        task, optimizer=OptimizerConfig(**{"iterations": 2, **overrides}), engines=engine
    )


def test_two_iterations_record_everything_and_improve():
    engine = FakeEngine(scripted_rewrites)
    result = optimize_toy(make_task(), engine, reduction="sum")
    assert len(result.history) == 2
    assert result.best.loss < result.initial.loss
    assert "carefully" in result.best.text
    first = result.history[0]
    assert first.parent_ids == ("init",)
    assert len(first.hard_cases["init"]) == 3
    assert first.hard_cases["init"] == ("5", "4", "3")  # longest answers cost most in sum
    variants = [c for c in first.candidates if c.candidate_id not in first.parent_ids]
    assert len(variants) == 3 * 4
    assert all(math.isfinite(c.loss) for c in first.candidates)
    assert first.masking_results[0].units == ("Think.",)
    assert first.masking_results[0].method == "model"
    for candidate_id, parent in result.lineage.items():
        assert parent is None or parent in result.lineage, (
            f"{candidate_id} has unknown parent {parent}"
        )
    assert result.work.forward_passes == sum(engine.score_calls)
    assert result.work.tokens_generated > 0 and result.work.tokens_scored > 0


def test_rounds_make_one_call_per_stage():
    engine = FakeEngine(scripted_rewrites)
    optimize_toy(make_task(), engine)
    # analyze; rewrite (improves); analyze the new incumbent; rewrite, where every sample repeats
    # an already scored prompt, is rejected as a duplicate and leaves nothing to score
    assert len(engine.generate_calls) == 4
    assert len(engine.score_calls) == 3


def test_same_seed_same_run_and_seed_matters():
    first = optimize_toy(make_task(), FakeEngine(scripted_rewrites), seed=3)
    again = optimize_toy(make_task(), FakeEngine(scripted_rewrites), seed=3)
    other = optimize_toy(make_task(), FakeEngine(scripted_rewrites), seed=4)
    texts = lambda r: [c.text for rec in r.history for c in rec.candidates]
    assert texts(first) == texts(again) and first.best == again.best
    assert texts(first) != texts(other)


@pytest.mark.parametrize(
    "style, finish_reason, answer",
    [
        ("long", "stop", "I cannot help with that."),
        # cut off before a sentence ended: nothing to keep (keep_cut_rewrites)
        ("short", "length", "I cannot help with that because"),
    ],
    ids=["no-tag", "cut-off"],
)
def test_rewriter_without_valid_prompts_keeps_the_initial_prompt(style, finish_reason, answer):
    engine = FakeEngine(lambda context, seed, index: answer, finish_reason=finish_reason)
    result = optimize_toy(make_task(), engine, iterations=3, meta_prompt=style)
    assert len(result.history) == 3
    assert result.best.candidate_id == "init"
    for record in result.history:
        assert len(record.rejected) == 3 * 4
        assert {r.reason for r in record.rejected} == {"no_prompt_tag"}
        assert not record.improved
    assert result.history[0].masking_results[0].method == "sentences"  # segmentation fell back too


@pytest.mark.parametrize("keep_cut, stop", [(True, False), (False, True)])
def test_a_rewrite_cut_off_by_the_budget_is_kept_to_its_last_sentence(keep_cut, stop):
    def cut_off(context, seed, index):  # segmentations have no sentence end: sentences used
        return f"Read carefully {seed % 1000}-{index}. Then answer with"

    engine = FakeEngine(cut_off, finish_reason="length")
    result = optimize_toy(
        make_task(),
        engine,
        iterations=1,
        meta_prompt="short",
        keep_cut_rewrites=keep_cut,
        stop_at_prompt_tag=stop,
    )
    [record] = result.history
    rewrite_rows = [row for row in engine.requests if row["prefill"] == "<prompt>"]
    expected_stop = ["</prompt>"] if stop else []
    assert rewrite_rows and all(row["stop"] == expected_stop for row in rewrite_rows)
    scored = [c.text for c in record.candidates if c.candidate_id != "init"]
    if keep_cut:
        assert len(scored) == 3 * 4 and not record.rejected
        assert all(t.startswith("Read carefully") and t.endswith(".") for t in scored)
    else:
        assert not scored and {r.reason for r in record.rejected} == {"no_prompt_tag"}


def test_patience_stops_early():
    engine = FakeEngine(lambda context, seed, index: "nothing", finish_reason="length")
    result = optimize_toy(make_task(), engine, iterations=10, patience=2)
    assert len(result.history) == 2
    assert "no improvement" in result.stop_reason


def test_too_few_training_examples_for_k():
    with pytest.raises(
        ValueError,
        match=r"task 'toy': 3 hard cases need at least 3 training examples; the training split has 2",
    ):
        TaskRun(
            make_task(n_train=2), OptimizerConfig(), FakeEngine(None).count_tokens, PromptFormat()
        )


def test_prompt_without_text_is_rejected(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"input": "a", "target": "b"}\n{"input": "c", "target": "d"}\n')
    config = TaskConfig(name="blank", data=str(data), initial_prompt="   ")
    with pytest.raises(DataError, match="task 'blank': field 'initial_prompt' is empty"):
        load_task(config)


def test_short_style_prefills_the_tag_and_closes_finished_answers():
    def respond(context, seed, index):
        return "Answer carefully." if "<mask>" not in context else "<mask>Think.</mask>"

    engine = FakeEngine(respond)
    result = optimize_toy(make_task(), engine, iterations=1)
    rewrites = [r for r in engine.requests if "<mask>" not in r["input"]]
    assert rewrites and all(r["prefill"] == "<prompt>" and r["role"] == "user" for r in rewrites)
    assert result.best.text == "Answer carefully."


def test_masking_off_skips_analysis_rounds():
    engine = FakeEngine(scripted_rewrites)
    result = optimize_toy(make_task(), engine, use_masking=False)
    assert result.history[0].masking_results[0].text == "(mask analysis disabled)"
    assert len(engine.generate_calls) == 2  # rewrites only; the first round generates nothing


def test_preference_objective_scores_rejected_answers():
    engine = FakeEngine(scripted_rewrites)
    task = make_task(fmt="multiple_choice", rejected=("(B)", "(C)"))
    result = optimize_toy(task, engine, objective="preference", iterations=1)
    # chosen and rejected cost the same per word under one prompt; the loss is finite and positive
    assert result.initial.loss > 0
    rows_per_prompt = len(task.train) * 3
    assert engine.score_calls[0] % rows_per_prompt == 0


def test_several_tasks_share_each_engine_call():
    engine = FakeEngine(scripted_rewrites)
    runs = [
        TaskRun(
            make_task(task_id=f"task{i}"),
            OptimizerConfig(iterations=2),
            engine.count_tokens,
            PromptFormat(),
        )
        for i in range(3)
    ]
    results = run_rounds(runs, rewriter=engine, scorer=engine)
    alone = optimize_toy(make_task(task_id="task0"), FakeEngine(scripted_rewrites))
    assert len(engine.score_calls) == 3
    assert [r.task_id for r in results] == ["task0", "task1", "task2"]
    assert results[0].best.loss == alone.best.loss
    assert [c.text for c in results[0].history[-1].candidates] == [
        c.text for c in alone.history[-1].candidates
    ]
