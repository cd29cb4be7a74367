"""Option accuracy (lm-eval's acc / acc_norm) from the held-out scoring pass: which option the
model scores highest, by total or per-character log-probability; ties count as wrong; null
for formats without options."""

import pytest

from pmpo_ray.evaluation.heldout import EvalPrompt, EvalTask, holdout_score_requests
from pmpo_ray.evaluation.option_accuracy import option_accuracy, option_choices
from pmpo_ray.evaluation.prompt_scores import PromptEvaluation, example_scores
from pmpo_ray.tasks.example import Example
from tests.fakes import FakeEngine


def option(example_id, continuation, logprob, gold=False):
    return {
        "example_id": example_id,
        "continuation": continuation,
        "logprob_sum": logprob,
        "weight": 1.0 if gold else -1.0,
    }


def test_the_chosen_option_has_the_highest_summed_logprob():
    rows = [
        option("e1", "(A)", -3.0, gold=True),
        option("e1", "(B)", -1.0),  # the model's favourite: wrong
        option("e1", "(C)", -5.0),
        option("e2", "(A)", -4.0),
        option("e2", "(B)", -0.5, gold=True),  # right
        option("e2", "(C)", -2.0),
    ]
    assert option_choices(rows) == {"e1": "(B)", "e2": "(B)"}
    assert option_accuracy(rows) == pytest.approx(0.5)


def test_length_normalization_can_choose_the_longer_option():
    long_gold = "a long and correct answer"  # 25 characters: -10 in all, -0.4 per character
    rows = [option("e1", long_gold, -10.0, gold=True), option("e1", "No", -3.0)]  # -1.5/char
    assert option_choices(rows) == {"e1": "No"}  # fewer characters to pay for
    assert option_choices(rows, per_char=True) == {"e1": long_gold}
    assert option_accuracy(rows) == 0.0
    assert option_accuracy(rows, per_char=True) == 1.0


def test_a_tie_at_the_top_counts_as_wrong_but_a_tie_below_does_not():
    tied = [option("e1", "Yes", -2.0, gold=True), option("e1", "No", -2.0)]
    assert option_choices(tied) == {"e1": None}
    assert option_accuracy(tied) == 0.0
    below = [
        option("e1", "(A)", -1.0, gold=True),
        option("e1", "(B)", -2.0),
        option("e1", "(C)", -2.0),
    ]
    assert option_choices(below) == {"e1": "(A)"}
    assert option_accuracy(below) == 1.0


def test_examples_without_options_give_none():
    rows = [option("e1", "the answer", -2.0, gold=True)]
    assert option_choices(rows) == {}
    assert option_accuracy(rows) is None and option_accuracy(rows, per_char=True) is None


def eval_task(fmt, examples, prompts=("Answer.",)):
    return EvalTask(
        task_id="t",
        format=fmt,
        answer_match="option",
        examples=tuple(examples),
        prompts=tuple(EvalPrompt(f"p{i}", text) for i, text in enumerate(prompts)),
        objective="ce",
        reduction="mean",
        beta=1.0,
    )


MC_EXAMPLES = (  # the fake engine charges per word: the gold option is long, "No" one word
    Example("e1", "q1", "the long right answer", ("No",)),
    Example("e2", "q2", "Yes", ("no no",)),
)


def test_heldout_scoring_of_a_multiple_choice_task_gives_both_option_accuracies():
    task = eval_task("multiple_choice", MC_EXAMPLES)
    requests = holdout_score_requests(task, "system")
    assert requests.num_rows == 4  # gold + distractor per example: the one scoring pass
    engine = FakeEngine(lambda *_: "")
    [metrics] = score_metrics(task, engine.score(requests)).values()
    assert engine.score_calls == [4]
    [scores] = example_scores(
        engine.score(requests), objective="ce", reduction="mean", beta=1.0
    ).values()
    # The options are kept per example, reference first, with the choice of each measure.
    assert [s.options for s in scores] == [("the long right answer", "No"), ("Yes", "no no")]
    assert [s.chosen_option for s in scores] == ["No", "Yes"]
    assert [s.chosen_option_norm for s in scores] == ["the long right answer", "Yes"]
    # e1: "No" costs 2 nats, the gold 8: acc picks "No"; per character the gold wins.
    # e2: "Yes" costs 2 (2/3 per character), "no no" 4 (4/5): both pick the gold.
    assert metrics["option_accuracy"] == pytest.approx(0.5)
    assert metrics["option_accuracy_norm"] == pytest.approx(1.0)


@pytest.mark.parametrize("fmt", ["preference", "supervised"])
def test_formats_without_options_give_null(fmt):
    examples = MC_EXAMPLES if fmt == "preference" else (Example("e1", "q1", "answer"),)
    task = eval_task(fmt, examples)
    scored = FakeEngine(lambda *_: "").score(holdout_score_requests(task, "system"))
    [metrics] = score_metrics(task, scored).values()
    assert metrics["option_accuracy"] is None and metrics["option_accuracy_norm"] is None
    assert (metrics["pairwise_accuracy"] is None) == (fmt == "supervised")


def score_metrics(task: EvalTask, scored) -> dict[str, dict]:
    """candidate id -> the figures evaluation.json reports, from one scoring pass."""
    has_options = task.format == "multiple_choice"
    scores = example_scores(scored, objective="ce", reduction="mean", beta=1.0)
    return {
        cid: PromptEvaluation(per_example, None).figures(has_options)
        for cid, per_example in scores.items()
    }


def test_pmpo_evaluate_prints_option_accuracy_beside_the_others():
    from pmpo_ray.commands.evaluate import summary_table

    row = {"heldout_ce": 1.0, "heldout_loss": 0.5, "accuracy": 0.25, "pairwise_accuracy": 0.75}
    table = summary_table(
        {
            "navigate": {
                "prompts": [
                    {
                        **row,
                        "name": "optimized",
                        "option_accuracy": 0.5,
                        "option_accuracy_norm": 0.625,
                    }
                ]
            },
            "counting": {"prompts": [{**row, "name": "optimized", "option_accuracy": None}]},
        }
    )
    header, navigate, counting = table.splitlines()
    assert header.split()[-2:] == ["option", "opt/ch"]
    assert navigate.split()[-4:] == ["25%", "75%", "50%", "62%"]
    assert counting.split()[-2:] == ["-", "-"]
