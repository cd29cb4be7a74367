"""Answer extraction on realistic generations, wrong formats included.

Rows marked "real" are greedy outputs of the default model (SmolLM2-135M-Instruct, hf backend,
max_tokens 96) on the shipped BBH samples navigate and object_counting, shortened where long.
"""

from __future__ import annotations

import pytest

from pmpo_ray.evaluation.extractors import extract_answer, is_correct, parse_number

YN = ["Yes", "No"]
AB = ["(A)", "(B)"]
ABC = ["(A)", "(B)", "(C)"]
ABCDE = ["(A)", "(B)", "(C)", "(D)", "(E)"]
VALID = ["valid", "invalid"]

# Longer real outputs of the default model, kept whole where the ending matters.
REAL_MARKED_THEN_CUT = (
    "A simple yet intriguing problem. The answer is 3.\n\nThis is a classic example of a "
    '"brain teaser" or a "puzzle" because it requires a deep understanding of mathematical '
    "concepts, such as number"
)
REAL_CUT = (
    "To solve this problem, we need to identify the fruits.\n\n"
    "Now, let's calculate the number of fruits. We have"
)
REAL_CUT_AT_BULLET = (
    "We can do this by adding the number of fruits of each type:\n\n"
    "- A plum = 3\n- A strawberry = 3\n-"
)
REAL_WRONG_PRODUCT = "The total number of fruits is 3 * 2 * 2 * 2 = 8.\n\nSo, you have 8 fruits."
REAL_FRIDGE = "In a fridge, there are 3 objects: a fridge, a chair, and a microwave."
BOOLEAN_COT = "not ( True ) is False, and False and True is False.\nSo the answer is False."
SORT_MARKED = "Sorting by first letter.\nThe answer is apple banana cherry."
SORT_CUT = "We sort by first letter.\nApple comes before banana because a is before"
GSM_HASHES = "She sells 16 - 3 - 4 = 9 eggs for 9 * 2 = $18.\n#### 18"
GSM_NO_MARKER = "16 - 3 - 4 = 9 eggs are left.\nShe makes 9 * 2 = $18 every day."
GSM_CUT = "First she eats 3 eggs, so 16 - 3 = 13.\nThen she bakes with 4, so 13 - 4 ="

# (output, options, gold, expected extracted, expected correct)
OPTION_CASES = [
    # labels
    ("(A) is opinion-size-age; (B) is not.\nSo the answer is (B).", ABC, "(B)", "(B)", True),
    ("Both look odd to me.\n**Answer:** (C)", ABC, "(A)", "(C)", False),
    ("(A)", AB, "(A)", "(A)", True),
    ("A", ABC, "(A)", "(A)", True),
    ("B) 21", ABCDE, "(B)", "(B)", True),
    ("So the answer is **(B)**.", AB, "(B)", "(B)", True),
    ("**Answer:**\n(C) blue", ABC, "(C)", "(C)", True),
    ("I would pick option B.", ABC, "(B)", "(B)", True),
    ("The answer is A because the adjectives follow the order.", AB, "(A)", "(A)", True),
    # an explicit marker beats a later mention while explaining
    ("The answer is (A). Option (C) would need size before age.", ABC, "(A)", "(A)", True),
    # no marker: the last mention commits
    ("(A) puts size before opinion.\n(B) keeps the order, so (B) it is.", AB, "(B)", "(B)", True),
    # wrong formats and cut-offs: None, never a guess
    ("A man walks 3 steps forward and 3 steps back.", ABC, "(A)", None, False),
    ("I am not sure which adjective order is correct here.", AB, "(A)", None, False),
    ("Let's check each option.\n(A) uses opinion, size, age, and then", AB, "(A)", None, False),
    ("So the answer is", AB, "(B)", None, False),
    # texts
    ("The answer is: Yes", YN, "Yes", "Yes", True),
    ("yes.", YN, "Yes", "Yes", True),
    ("Answer: No, you end up 3 steps to the left.", YN, "No", "No", True),
    ("No", YN, "No", "No", True),  # real, navigate, no instruction
    ("Yes\n\nThe answer is: Yes", YN, "No", "Yes", False),  # real, "Let's think step by step."
    ("You end up three steps to the left of where you started.", YN, "No", None, False),
    ("Is it valid? No: the answer is invalid.", VALID, "invalid", "invalid", True),
]

# (output, gold, expected extracted, expected correct)
EXACT_CASES = [
    (BOOLEAN_COT, "False", "False", True),
    ("The answer is: **true**.", "True", "true", True),
    ("yes.", "yes", "yes", True),
    ("Yes, the sentence is plausible.", "yes", "Yes", True),
    ("**Answer:** invalid", "valid", "invalid", False),
    ("The answer isn't obvious.\nNo.", "no", "No", True),
    (SORT_MARKED, "apple banana cherry", "apple banana cherry", True),
    (
        "Sorting by first letter.\napple banana cherry",
        "apple banana cherry",
        "apple banana cherry",
        True,
    ),
    ("So the answer is banana apple cherry.", "apple banana cherry", "banana apple cherry", False),
    ("Close them in reverse order.\nSo the answer is: (( [ ] ))", "(( [ ] ))", "(( [ ] ))", True),
    ("We close the brackets in reverse order.\n(( [ ] ))", "(( [ ] ))", "(( [ ] ))", True),
    (SORT_CUT, "apple banana", None, False),
    ("", "True", None, False),
    # numeric BBH targets compare as numbers: real object_counting outputs
    ("A total of 12 instruments.", "8", "12", False),
    (REAL_FRIDGE, "3", "3", True),
    (REAL_WRONG_PRODUCT, "14", "8", False),
    (REAL_MARKED_THEN_CUT, "3", "3", True),
    (REAL_CUT, "15", None, False),
    (REAL_CUT_AT_BULLET, "15", None, False),
]

# (output, gold, expected extracted, expected correct)
NUMBER_CASES = [
    (GSM_HASHES, "18", "18", True),
    ("The final answer is $\\boxed{42}$.", "42", "42", True),
    ("Adding 40 and 2 gives \\boxed{42}, since 2 more were bought in week 3.", "42", "42", True),
    ("Answer: 42", "42", "42", True),
    ("The answer is $1,234.50.", "1234.5", "1234.5", True),
    ("So she has 18 eggs.", "18.0", "18", True),
    ("The temperature drops by 5 degrees.\nThe answer is -5.", "-5", "-5", True),
    ("Each apple costs 0.75 dollars, so the answer is 0.75", "0.75", "0.75", True),
    ("The answer is 18 eggs.", "18", "18", True),
    ("Answer: 3 + 15 = 18 eggs", "18", "18", True),
    ("The answer is 50%.", "50", "50", True),
    ("**Answer:** 1,000,000", "1000000", "1000000", True),
    ("#### 7.0", "7", "7", True),
    (GSM_NO_MARKER, "18", "18", True),
    ("The answer is 17.", "18", "17", False),
    (GSM_CUT, "9", None, False),
    ("She sells the rest at the market.", "18", None, False),
]

# (output, match, options, gold, expected extracted, expected correct)
CASES = (
    [(out, "option", opts, gold, ext, ok) for out, opts, gold, ext, ok in OPTION_CASES]
    + [(out, "exact", (), gold, ext, ok) for out, gold, ext, ok in EXACT_CASES]
    + [(out, "number", (), gold, ext, ok) for out, gold, ext, ok in NUMBER_CASES]
)


@pytest.mark.parametrize(("output", "match", "options", "gold", "extracted", "correct"), CASES)
def test_realistic_outputs(output, match, options, gold, extracted, correct):
    assert is_correct(output, gold, match, options) == (extracted, correct)


# A numeric gold switches "exact" to number extraction, which extract_answer cannot know.
TEXT_CASES = [row for row in CASES if row[1] != "exact" or parse_number(row[3]) is None]


@pytest.mark.parametrize(("output", "match", "options", "gold", "extracted", "correct"), TEXT_CASES)
def test_extract_answer_agrees_with_is_correct(output, match, options, gold, extracted, correct):
    assert extract_answer(output, match, options) == extracted


def test_the_table_covers_every_match_and_wrong_formats():
    assert len(CASES) >= 40
    for match in ("exact", "option", "number"):
        rows = [row for row in CASES if row[1] == match]
        assert any(row[4] is None for row in rows), match
        assert {row[5] for row in rows} == {True, False}, match


def test_option_is_returned_exactly_as_given():
    assert extract_answer("the answer is b) 21 or B) 21", "option", ["A)", "B)"]) == "B)"
    assert extract_answer("Answer: NO.", "option", ["yes", "no"]) == "no"
    # the longest option wins where two start at the same place
    assert extract_answer("Answer: Yes, definitely", "option", ["Yes", "Yes, definitely"]) == (
        "Yes, definitely"
    )


def test_numbers_compare_numerically():
    assert parse_number("$1,234.50") == parse_number("1234.5")
    assert parse_number("18.0") == parse_number("18")
    assert parse_number("eighteen") is None
    assert extract_answer("The answer is 100.", "number") == "100"


def test_unknown_match_is_named():
    for call in (
        lambda: extract_answer("Answer: 4", "fuzzy"),
        lambda: is_correct("Answer: 4", "4", "fuzzy"),
    ):
        with pytest.raises(ValueError, match="'fuzzy'"):
            call()


def test_bad_gold_and_options_are_named():
    with pytest.raises(ValueError, match=r"'\(D\)' is none of the options"):
        is_correct("(A)", "(D)", "option", ABC)
    with pytest.raises(ValueError, match="needs a list of options"):
        extract_answer("(A)", "option")
    with pytest.raises(ValueError, match="'many' is not a number"):
        is_correct("Answer: 4", "many", "number")


def test_an_answer_opening_with_an_option_commits_to_it():
    labels = ["(A)", "(B)", "(C)"]
    assert extract_answer("(B) The peaches are the cheapest", "option", labels) == "(B)"
    assert extract_answer("B) The tractor is the oldest", "option", labels) == "(B)"
    assert extract_answer("No, the instructions lead elsewhere", "option", ["Yes", "No"]) == "No"


def test_a_stopped_generation_keeps_its_unpunctuated_last_line():
    output = "Let me count them.\nThere are 7 vegetables in total"
    assert extract_answer(output, "number") is None  # might be cut off mid-sentence
    assert extract_answer(output, "number", complete=True) == "7"
    assert is_correct(output, "7", "exact", complete=True) == ("7", True)
    cut = "Let me think.\nIt depends on whether we count the"
    assert extract_answer(cut, "exact") is None
    assert extract_answer(cut, "exact", complete=True) == "It depends on whether we count the"
