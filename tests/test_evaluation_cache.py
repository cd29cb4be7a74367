"""The evaluation cache: a prompt evaluated once is read back, not scored again; its key holds
everything the result depends on; a corrupt entry is named, evaluated again and replaced."""

from __future__ import annotations

import json

import pytest

from pmpo_ray.evaluation.cache import EvaluationCache
from pmpo_ray.evaluation.cached_evaluation import evaluate_texts, prompt_keys
from pmpo_ray.evaluation.heldout import EvalPrompt, EvalTask
from pmpo_ray.jobs import EvaluationConfig
from pmpo_ray.tasks.example import Example
from tests.fakes import FakeEngine

EXAMPLES = (
    Example("e1", "Is it raining?", "(A)", ("(B)",)),
    Example("e2", "Is it sunny?", "(B)", ("(A)",)),
)
CONFIG = EvaluationConfig(max_answer_tokens=4)
SCORER = {"backend": "fake", "model": "m", "dtype": "float32"}


def task(*texts: str, examples=EXAMPLES) -> EvalTask:
    return EvalTask(
        task_id="t",
        format="multiple_choice",
        answer_match="option",
        examples=examples,
        prompts=tuple(EvalPrompt(f"p{i}", text) for i, text in enumerate(texts)),
        objective="ce",
        reduction="mean",
        beta=1.0,
    )


def evaluate(engine, cache, *texts, role="system", scorer=SCORER):
    [results], [cached] = evaluate_texts(
        [task(*texts)], engines=engine, config=CONFIG, role=role, scorer=scorer, cache=cache
    )
    return results, cached


def test_a_prompt_evaluated_once_is_read_back_and_only_new_prompts_are_scored(tmp_path):
    cache = EvaluationCache(tmp_path / "cache")
    engine = FakeEngine(lambda *_: "(A)", good_words=("careful",))
    first, cached = evaluate(engine, cache, "Be careful.", "Think.")
    assert cached == set() and engine.score_calls == [8] and engine.generate_calls
    generated = len(engine.generate_calls)

    again, cached = evaluate(engine, cache, "Be careful.", "Think.", "New prompt.")
    assert cached == {"Be careful.", "Think."}
    assert engine.score_calls == [8, 4]  # only the new prompt's 2 examples x 2 options
    assert len(engine.generate_calls) == generated + 1
    assert {text: again[text] for text in first} == first  # the same records, read back
    assert not list((tmp_path / "cache").rglob(".tmp-*"))  # entries were renamed into place


def test_the_key_changes_with_whatever_the_result_depends_on():
    def keys(**changes):
        args = {"task": task("Be careful."), "config": CONFIG, "role": "system"} | changes
        return prompt_keys(args["task"], args["config"], args["role"], changes.get("s", SCORER))

    base = keys()
    assert keys() == base  # stable
    assert keys(role="user") != base
    assert keys(config=EvaluationConfig(max_answer_tokens=8)) != base
    assert keys(s={**SCORER, "dtype": "bfloat16"}) != base
    assert keys(task=task("Be careful.", examples=EXAMPLES[:1])) != base
    assert list(keys(task=task("Be careful!")).values()) != list(base.values())


def test_a_corrupt_entry_is_named_evaluated_again_and_replaced(tmp_path, capsys):
    cache = EvaluationCache(tmp_path / "cache")
    engine = FakeEngine(lambda *_: "(A)")
    first, _ = evaluate(engine, cache, "Think.")
    [entry] = (tmp_path / "cache").rglob("*.json")
    entry.write_text('{"version": 1, "evaluation": {"scores": [')  # a torn write

    again, cached = evaluate(engine, cache, "Think.")
    assert str(entry) in capsys.readouterr().err
    assert cached == set() and engine.score_calls == [4, 4] and again == first
    assert json.loads(entry.read_text())["version"] == 1  # replaced by a whole entry
    assert evaluate(engine, cache, "Think.")[1] == {"Think."}


def test_the_environment_places_or_turns_off_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PMPO_RAY_CACHE", str(tmp_path / "here"))
    assert EvaluationCache.from_environment().folder == tmp_path / "here" / "evaluations"
    monkeypatch.setenv("PMPO_RAY_CACHE", "off")
    off = EvaluationCache.from_environment()
    engine = FakeEngine(lambda *_: "(A)")
    evaluate(engine, off, "Think.")
    assert evaluate(engine, off, "Think.")[1] == set() and engine.score_calls == [4, 4]


@pytest.mark.parametrize("text", ["", "Think."])
def test_an_entry_holds_what_predictions_and_intervals_need(tmp_path, text):
    results, _ = evaluate(FakeEngine(lambda *_: "(A)"), EvaluationCache(tmp_path), text)
    [evaluation] = results.values()
    assert [s.example_id for s in evaluation.scores] == ["e1", "e2"]
    assert all(s.options and len(s.option_logprobs) == 2 for s in evaluation.scores)
    assert [a.correct for a in evaluation.answers] == [True, False]  # both answered "(A)"
    assert evaluation.per_example(has_options=True)["accuracy"] == [1.0, 0.0]
