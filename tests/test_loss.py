from __future__ import annotations

import math
import random

import pyarrow as pa
import pytest

from pmpo_ray.pmpo.loss import (
    example_ce,
    example_losses,
    mean_loss,
    pairwise_accuracy,
    preference_loss,
)


def scored_table(rows: list[tuple[str, str, float, float, int]]) -> pa.Table:
    """(candidate_id, example_id, weight, logprob_sum, n_tokens) rows as a scored table."""
    return pa.Table.from_pylist(
        [
            {
                "request_id": i,
                "task_id": "t",
                "candidate_id": c,
                "example_id": e,
                "kind": "candidate",
                "context": "ctx",
                "continuation": "ans",
                "weight": w,
                "logprob_sum": lp,
                "n_tokens": n,
                "is_greedy": False,
            }
            for i, (c, e, w, lp, n) in enumerate(rows)
        ]
    )


# ----- example_ce --------------------------------------------------------------------------


def test_example_ce_mean_is_nats_per_token_and_sum_is_total():
    assert example_ce(-6.0, 3, "mean") == pytest.approx(2.0)
    assert example_ce(-6.0, 3, "sum") == pytest.approx(6.0)


def test_example_ce_rejects_empty_continuation_and_unknown_reduction():
    with pytest.raises(ValueError, match="n_tokens"):
        example_ce(-1.0, 0, "mean")
    with pytest.raises(ValueError, match="n_tokens"):
        example_ce(-1.0, -2, "sum")
    with pytest.raises(ValueError, match="reduction"):
        example_ce(-1.0, 1, "max")  # type: ignore[arg-type]


# ----- preference_loss / pairwise_accuracy -------------------------------------------------


def test_preference_loss_matches_hand_value():
    assert preference_loss(-2.0, [-3.0]) == pytest.approx(math.log(1 + math.exp(-1)))
    assert preference_loss(-2.0, [-3.0]) == pytest.approx(0.3132617, abs=1e-7)


def test_preference_loss_is_log2_when_chosen_equals_rejected():
    assert preference_loss(-5.0, [-5.0]) == pytest.approx(math.log(2))


def test_preference_loss_beta_scales_the_margin():
    assert preference_loss(-2.0, [-3.0], beta=2.0) == pytest.approx(math.log(1 + math.exp(-2)))
    assert preference_loss(-2.0, [-3.0], beta=0.5) == pytest.approx(math.log(1 + math.exp(-0.5)))


def test_preference_loss_averages_over_rejected_answers():
    # margins +1 and -2: mean of log(1+e^-1) and log(1+e^2)
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(2))) / 2
    assert preference_loss(-2.0, [-3.0, 0.0]) == pytest.approx(expected)


def test_preference_loss_is_finite_and_accurate_at_extremes():
    wrong_way = preference_loss(-2000.0, [0.0])  # naive log(sigmoid(-2000)) is log(0)
    assert math.isfinite(wrong_way)
    assert wrong_way == pytest.approx(2000.0)
    right_way = preference_loss(0.0, [-2000.0])  # naive exp(2000) overflows the other way
    assert math.isfinite(right_way)
    assert 0.0 <= right_way < 1e-300
    small = preference_loss(0.0, [-40.0])  # keeps precision instead of rounding to 0
    assert small == pytest.approx(math.exp(-40.0), rel=1e-9)


def test_preference_loss_needs_a_rejected_answer():
    with pytest.raises(ValueError, match="rejected"):
        preference_loss(-1.0, [])


def test_pairwise_accuracy_counts_strictly_lower_rejected():
    assert pairwise_accuracy(-2.0, [-3.0, -1.0, -2.0, -5.0]) == pytest.approx(0.5)
    assert pairwise_accuracy(-2.0, [-2.0]) == 0.0
    with pytest.raises(ValueError, match="rejected"):
        pairwise_accuracy(-2.0, [])


# ----- example_losses ----------------------------------------------------------------------


def test_ce_losses_use_the_reference_row_and_keep_first_seen_order():
    table = scored_table(
        [
            ("p1", "e2", 1.0, -4.0, 2),
            ("p0", "e1", 1.0, -3.0, 3),
            ("p1", "e1", 1.0, -6.0, 3),
            ("p1", "e1", -1.0, -0.5, 1),  # a rejected row the ce objective ignores
            ("p0", "e2", 1.0, -1.0, 1),
        ]
    )
    losses = example_losses(table, objective="ce", reduction="mean")
    assert list(losses) == ["p1", "p0"]
    assert list(losses["p1"]) == ["e2", "e1"]
    assert losses["p1"] == pytest.approx({"e2": 2.0, "e1": 2.0})
    assert losses["p0"] == pytest.approx({"e1": 1.0, "e2": 1.0})
    summed = example_losses(table, objective="ce", reduction="sum")
    assert summed["p1"] == pytest.approx({"e2": 4.0, "e1": 6.0})


def test_preference_losses_compare_chosen_with_every_rejected_row():
    table = scored_table(
        [
            ("p", "e", -1.0, -3.0, 4),
            ("p", "e", 1.0, -2.0, 9),
            ("p", "e", -1.0, 0.0, 1),
        ]
    )
    losses = example_losses(table, objective="preference", reduction="mean", beta=1.0)
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(2))) / 2
    assert losses == {"p": {"e": pytest.approx(expected)}}
    scaled = example_losses(table, objective="preference", beta=2.0)
    assert scaled["p"]["e"] == pytest.approx(preference_loss(-2.0, [-3.0, 0.0], beta=2.0))
    assert scaled["p"]["e"] != pytest.approx(expected)


def test_ce_without_exactly_one_reference_row_names_candidate_and_example():
    none = scored_table([("p0", "e0", 1.0, -1.0, 1), ("p0", "e7", -1.0, -1.0, 1)])
    with pytest.raises(ValueError, match=r"'p0'.*'e7'.*found 0"):
        example_losses(none, objective="ce")
    two = scored_table([("p3", "e1", 1.0, -1.0, 1), ("p3", "e1", 1.0, -2.0, 1)])
    with pytest.raises(ValueError, match=r"'p3'.*'e1'.*found 2"):
        example_losses(two, objective="ce")


def test_preference_without_rejected_row_names_candidate_and_example():
    table = scored_table(
        [("p", "e0", 1.0, -1.0, 1), ("p", "e0", -1.0, -2.0, 1), ("q", "e5", 1.0, -1.0, 1)]
    )
    with pytest.raises(ValueError, match=r"'q'.*'e5'.*rejected"):
        example_losses(table, objective="preference")
    # the same table is fine for ce, which needs no rejected rows
    assert set(example_losses(table, objective="ce")) == {"p", "q"}


def test_preference_without_chosen_row_names_candidate_and_example():
    table = scored_table([("p", "e9", -1.0, -1.0, 1), ("p", "e9", -1.0, -2.0, 1)])
    with pytest.raises(ValueError, match=r"'p'.*'e9'"):
        example_losses(table, objective="preference")


def test_example_losses_reports_missing_columns():
    table = scored_table([("p", "e", 1.0, -1.0, 1)]).drop_columns(["n_tokens"])
    with pytest.raises(ValueError, match="n_tokens"):
        example_losses(table, objective="ce")


# ----- mean_loss ---------------------------------------------------------------------------


def test_mean_loss_is_the_plain_mean_and_rejects_empty():
    assert mean_loss({"a": 1.0, "b": 2.0, "c": 6.0}) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        mean_loss({})


def test_auto_objective_per_format_and_distractor_objectives_need_distractors():
    from pmpo_ray.pmpo.loss import resolve_objective

    # multiple choice: cross-entropy of the gold option (README: the objective study)
    assert resolve_objective("auto", "multiple_choice") == "ce"
    assert resolve_objective("auto", "preference") == "preference"
    assert resolve_objective("auto", "supervised") == "ce"
    assert resolve_objective("ce_plus_preference", "multiple_choice") == "ce_plus_preference"
    for objective in ("preference", "ce_plus_preference"):
        with pytest.raises(ValueError, match=f"the {objective} objective needs rejected"):
            resolve_objective(objective, "supervised")


def reference_losses(rows, objective, reduction, beta):
    """The per-row definition the array version must equal bit for bit."""
    groups = {}
    for row in rows:
        groups.setdefault(row["candidate_id"], {}).setdefault(row["example_id"], []).append(row)
    out = {}
    for candidate_id, examples in groups.items():
        for example_id, pair in examples.items():
            [reference] = [r for r in pair if r["weight"] > 0]
            ce = example_ce(reference["logprob_sum"], reference["n_tokens"], reduction)
            rejected = [r["logprob_sum"] for r in pair if r["weight"] < 0]
            loss = ce
            if objective != "ce":
                loss = preference_loss(reference["logprob_sum"], rejected, beta)
                loss = loss + ce if objective == "ce_plus_preference" else loss
            out.setdefault(candidate_id, {})[example_id] = loss
    return out


@pytest.mark.parametrize("objective", ["ce", "preference", "ce_plus_preference"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_array_losses_equal_the_per_row_definition_exactly(objective, reduction):
    """Interleaved candidates and examples, several rejected rows per pair: same floats, same
    key order (the optimizer's results must not change with the implementation)."""
    rng = random.Random(7)
    rows = []
    for round_ in range(3):
        for example in rng.sample(range(12), 12):
            for candidate in rng.sample(range(5), 5):
                if round_:  # later rounds add only rejected rows
                    weights = [-1.0]
                else:
                    weights = [1.0, -1.0] if rng.random() < 0.5 else [-1.0, 1.0]
                for weight in weights:
                    rows.append(
                        {
                            "candidate_id": f"c{candidate}",
                            "example_id": f"e{example}",
                            "weight": weight,
                            "logprob_sum": -rng.uniform(0.01, 40.0),
                            "n_tokens": rng.randint(1, 30),
                        }
                    )
    table = pa.Table.from_pylist(rows)
    got = example_losses(table, objective=objective, reduction=reduction, beta=0.7)
    want = reference_losses(rows, objective, reduction, 0.7)
    assert got == want
    assert list(got) == list(want)
    assert all(list(got[c]) == list(want[c]) for c in want)
