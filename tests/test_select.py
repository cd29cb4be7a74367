from __future__ import annotations

import pytest

from pmpo_ray.pmpo.select import Candidate, best_candidate, hard_cases, improved, update_population


def cand(
    candidate_id: str, loss: float, text: str | None = None, parent_id: str | None = None
) -> Candidate:
    return Candidate(
        candidate_id, text if text is not None else f"prompt {candidate_id}", loss, parent_id, 0
    )


def ids(candidates) -> list[str]:
    return [c.candidate_id for c in candidates]


# ----- hard_cases --------------------------------------------------------------------------


def test_hard_cases_are_highest_loss_first():
    losses = {"a": 0.5, "b": 2.0, "c": 1.0, "d": 3.0}
    assert hard_cases(losses, 2) == ["d", "b"]
    assert hard_cases(losses, 4) == ["d", "b", "c", "a"]


def test_hard_cases_ties_keep_mapping_order():
    assert hard_cases({"x": 1.0, "y": 2.0, "z": 2.0, "w": 2.0}, 2) == ["y", "z"]
    assert hard_cases({"w": 2.0, "z": 2.0, "y": 2.0}, 3) == ["w", "z", "y"]


def test_hard_cases_treats_an_unscored_example_as_hardest():
    assert hard_cases({"a": 1.0, "b": float("nan"), "c": 2.0}, 2) == ["b", "c"]


@pytest.mark.parametrize("k", [0, -1, 4])
def test_hard_cases_rejects_k_outside_the_examples(k):
    with pytest.raises(ValueError, match=rf"number of examples \(3\).*k={k}"):
        hard_cases({"a": 1.0, "b": 2.0, "c": 3.0}, k)


# ----- best_candidate / improved -----------------------------------------------------------


def test_best_candidate_is_lowest_loss_and_earliest_on_ties():
    assert best_candidate([cand("a", 2.0), cand("b", 1.0), cand("c", 3.0)]).candidate_id == "b"
    assert best_candidate([cand("inc", 1.0), cand("new", 1.0)]).candidate_id == "inc"
    assert best_candidate([cand("nan", float("nan")), cand("ok", 5.0)]).candidate_id == "ok"
    with pytest.raises(ValueError):
        best_candidate([])


def test_improved_needs_a_strictly_lower_best_loss():
    old = [cand("a", 1.0), cand("b", 2.0)]
    assert improved(old, [cand("c", 0.9)])
    assert not improved(old, [cand("c", 1.0)])
    assert not improved(old, [cand("c", 1.5), cand("d", 3.0)])
    assert not improved(old, [])
    with pytest.raises(ValueError):
        improved([], [cand("c", 0.1)])


# ----- update_population -------------------------------------------------------------------


def test_greedy_rule_replaces_the_incumbent_only_on_strict_improvement():
    incumbent = cand("inc", 1.0)
    assert update_population([incumbent], [cand("worse", 1.2)], 1) == (incumbent,)
    assert update_population([incumbent], [cand("tie", 1.0)], 1) == (incumbent,)
    better = cand("better", 0.99)
    assert update_population([incumbent], [cand("tie", 1.0), better], 1) == (better,)


def test_top_k_population_is_sorted_lowest_first_and_keeps_members_on_ties():
    population = [cand("m1", 1.0), cand("m2", 2.0), cand("m3", 3.0)]
    newcomers = [cand("n1", 2.0), cand("n2", 0.5), cand("n3", 3.0), cand("n4", 2.5)]
    result = update_population(population, newcomers, 3)
    # n1 ties m2 and does not displace it; n2 is strictly best
    assert ids(result) == ["n2", "m1", "m2"]
    assert ids(update_population(population, newcomers, 5)) == ["n2", "m1", "m2", "n1", "n4"]


def test_member_wins_a_tie_even_after_a_duplicate_newcomer_is_merged():
    # the newcomer repeats m1's text with a lower loss and ties m2: m2 (a member) must still win
    population = [cand("m1", 1.0, "A"), cand("m2", 0.5, "B")]
    result = update_population(population, [cand("n1", 0.5, "A")], 1)
    assert ids(result) == ["m2"]


def test_duplicate_texts_are_kept_once_with_the_lower_loss():
    population = [cand("m1", 1.0, "Solve it."), cand("m2", 2.0, "Think step by step.")]
    newcomers = [
        cand("same_worse", 1.5, "  Solve it.\n"),
        cand("same_tie", 2.0, "Think step by step. "),
        cand("same_better", 0.5, "\tThink step by step."),
        cand("fresh", 1.8, "Answer carefully."),
    ]
    result = update_population(population, newcomers, 4)
    assert ids(result) == ["same_better", "m1", "fresh"]
    assert len({c.text.strip() for c in result}) == len(result)


def test_duplicate_newcomers_among_themselves_keep_the_earliest_on_ties():
    result = update_population(
        [cand("m", 3.0, "old")], [cand("n1", 1.0, "new"), cand("n2", 1.0, " new ")], 3
    )
    assert ids(result) == ["n1", "m"]


def test_population_fills_up_when_there_is_room():
    result = update_population([cand("m", 1.0)], [cand("n1", 4.0), cand("n2", 2.0)], 3)
    assert ids(result) == ["m", "n2", "n1"]
    assert isinstance(result, tuple)


@pytest.mark.parametrize("size", [0, -3])
def test_population_size_must_be_positive(size):
    with pytest.raises(ValueError, match=rf"size={size}"):
        update_population([cand("m", 1.0)], [], size)
