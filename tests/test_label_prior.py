"""Label-prior collapse: choice and gold shares per label, and the labels chosen too often."""

import pytest

from pmpo_ray.evaluation.label_prior import COLLAPSE_FACTOR, over_chosen, shares


def test_shares_count_no_choice_in_the_denominator_and_sort_labels():
    got = shares(["(B)", "(A)", None, "(A)"])
    assert list(got) == ["(A)", "(B)"]
    assert got == pytest.approx({"(A)": 0.5, "(B)": 0.25})
    assert shares([]) == {} and shares([None]) == {}


def test_over_chosen_flags_a_label_picked_more_than_twice_its_gold_share():
    gold = {"(A)": 0.25, "(B)": 0.25, "(C)": 0.5}
    assert COLLAPSE_FACTOR == 2.0
    assert over_chosen({"(A)": 0.75, "(B)": 0.0, "(C)": 0.25}, gold) == ["(A)"]
    assert over_chosen({"(A)": 0.5, "(B)": 0.25, "(C)": 0.25}, gold) == []  # exactly twice
    assert over_chosen({"(A)": 0.5}, gold, factor=1.5) == ["(A)"]


def test_a_label_that_is_never_gold_but_chosen_counts():
    gold = {"Yes": 1.0}
    assert over_chosen({"No": 0.05, "Yes": 0.95}, gold) == ["No"]
    assert over_chosen({"No": 0.0, "Yes": 1.0}, gold) == []
    assert over_chosen({"Z": 0.1, "A": 0.9}, {}) == ["A", "Z"]
