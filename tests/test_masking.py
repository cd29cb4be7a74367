import math

import pytest

from pmpo_ray.pmpo.masking import (
    MASK_TOKEN,
    MAX_UNITS,
    Segmentation,
    mask_deltas,
    masked_prompt,
    parse_mask_units,
    render_masking,
    segment,
    segmentation_request,
    sentence_spans,
)

PROMPT = "You are a judge. Answer Yes or No. Be brief."


def assert_exact_cover(prompt, spans):
    """Every non-whitespace character lies in exactly one span; spans are in order and trimmed."""
    assert all(s < e for s, e in spans)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    for s, e in spans:
        assert not prompt[s].isspace() and not prompt[e - 1].isspace()
    for i, char in enumerate(prompt):
        if not char.isspace():
            assert sum(s <= i < e for s, e in spans) == 1, (i, char)


# ----- parse_mask_units ------------------------------------------------------------------------


def test_good_segmentation_maps_to_exact_unit_text():
    output = "<mask>You are a judge.</mask> <MASK>Answer Yes or No.</Mask> Be brief."
    spans, reason = parse_mask_units(PROMPT, output)
    assert reason == ""
    assert spans == ((0, 16), (17, 34))
    assert [PROMPT[s:e] for s, e in spans] == ["You are a judge.", "Answer Yes or No."]


def test_whitespace_around_unit_text_is_tolerated():
    output = "<mask>\n  You are a judge. </mask><mask> Be brief.\n</mask>"
    spans, reason = parse_mask_units(PROMPT, output)
    assert reason == ""
    assert [PROMPT[s:e] for s, e in spans] == ["You are a judge.", "Be brief."]


def test_repeated_text_is_located_after_the_previous_unit():
    prompt = "Be brief. Then check. Be brief."
    spans, reason = parse_mask_units(prompt, "<mask>Then check.</mask><mask>Be brief.</mask>")
    assert reason == ""
    assert spans == ((10, 21), (22, 31))


def test_nested_tags_are_rejected():
    assert parse_mask_units(PROMPT, "<mask>You are <mask>a judge.</mask></mask>") == (
        None,
        "nested <mask> tags",
    )


@pytest.mark.parametrize(
    "output",
    [
        "<mask>You are a judge.</mask> <mask>You are a judge.</mask>",  # wrapped twice, occurs once
        "<mask>Be brief.</mask> <mask>You are a judge.</mask>",  # out of order
        "<mask>You are a judge. Answer</mask> <mask>Answer Yes or No.</mask>",  # shared words
    ],
)
def test_overlapping_units_are_rejected(output):
    spans, reason = parse_mask_units(PROMPT, output)
    assert spans is None
    assert "overlap" in reason


def test_paraphrased_unit_is_rejected_and_quoted():
    long_unit = "You are a referee who decides every case with great care and attention."
    spans, reason = parse_mask_units(PROMPT, f"<mask>{long_unit}</mask>")
    assert spans is None
    assert "not verbatim" in reason
    assert long_unit[:40] in reason
    assert long_unit not in reason  # quoted, not dumped whole


def test_output_without_units_is_rejected():
    assert parse_mask_units(PROMPT, PROMPT) == (None, "no <mask> units")
    assert parse_mask_units(PROMPT, "") == (None, "no <mask> units")


def test_too_many_units_are_rejected():
    words = PROMPT.split()[:6]
    output = " ".join(f"<mask>{w}</mask>" for w in words)
    spans, reason = parse_mask_units(PROMPT, output)
    assert spans is None and "too many" in reason
    spans, reason = parse_mask_units(PROMPT, output, max_units=6)
    assert reason == "" and len(spans) == 6


@pytest.mark.parametrize(
    "output", ["<mask>You are a judge.", "You are a judge.</mask>", "<mask>A</mask></mask>"]
)
def test_unbalanced_tags_are_rejected(output):
    spans, reason = parse_mask_units(PROMPT, output)
    assert spans is None
    assert "unbalanced" in reason


def test_empty_unit_is_rejected():
    spans, reason = parse_mask_units(PROMPT, "<mask>You are a judge.</mask><mask>  </mask>")
    assert spans is None and "empty" in reason


def test_max_units_below_one_is_an_error():
    with pytest.raises(ValueError, match="max_units"):
        parse_mask_units(PROMPT, "<mask>Be brief.</mask>", max_units=0)
    with pytest.raises(ValueError, match="max_units"):
        sentence_spans(PROMPT, max_units=0)


# ----- segment ---------------------------------------------------------------------------------


def test_segment_uses_the_model_units_when_valid():
    result = segment(PROMPT, "You are a judge. <mask>Be brief.</mask>")
    assert result == Segmentation(((35, 44),), "model", "")
    assert result.units(PROMPT) == ("Be brief.",)


def test_segment_falls_back_to_sentences_and_records_why():
    result = segment(PROMPT, "<mask>Something else.</mask>")
    assert result.method == "sentences"
    assert "not verbatim" in result.rejected_reason
    assert result.units(PROMPT) == ("You are a judge.", "Answer Yes or No.", "Be brief.")


def test_segment_without_output_falls_back():
    result = segment(PROMPT, None)
    assert result.method == "sentences"
    assert result.rejected_reason == "no segmentation output"
    assert len(result.spans) == 3


def test_segment_of_untagged_output_falls_back_with_reason():
    result = segment(PROMPT, PROMPT)
    assert (result.method, result.rejected_reason) == ("sentences", "no <mask> units")


# ----- sentence_spans --------------------------------------------------------------------------


def test_sentence_spans_split_sentences():
    prompt = "  First one. Second!  Third? Done.  "
    spans = sentence_spans(prompt)
    assert [prompt[s:e] for s, e in spans] == ["First one.", "Second!", "Third?", "Done."]
    assert_exact_cover(prompt, spans)


def test_sentence_spans_do_not_split_inside_numbers_or_without_space():
    prompt = "Pi is 3.14 roughly.Next"
    assert sentence_spans(prompt) == ((0, len(prompt)),)


def test_sentence_spans_split_lines():
    prompt = "Step one\nStep two\r\n\n   Step three: go"
    spans = sentence_spans(prompt)
    assert [prompt[s:e] for s, e in spans] == ["Step one", "Step two", "Step three: go"]
    assert_exact_cover(prompt, spans)


def test_sentence_spans_merge_to_max_units_in_near_equal_groups():
    prompt = "One. Two! Three?\nFour\n\nFive. Six. Seven."
    spans = sentence_spans(prompt, max_units=3)
    assert [prompt[s:e] for s, e in spans] == ["One. Two!", "Three?\nFour", "Five. Six. Seven."]
    assert_exact_cover(prompt, spans)


def test_sentence_spans_default_limit():
    prompt = " ".join(f"Rule {i}." for i in range(12))
    spans = sentence_spans(prompt)
    assert len(spans) == MAX_UNITS
    assert_exact_cover(prompt, spans)
    counts = [prompt[s:e].count("Rule") for s, e in spans]
    assert sum(counts) == 12 and max(counts) - min(counts) <= 1


def test_sentence_spans_single_sentence_and_blank():
    assert sentence_spans("Just one sentence") == ((0, 17),)
    assert sentence_spans("  Just one.  ") == ((2, 11),)
    assert sentence_spans("") == ()
    assert sentence_spans(" \n\t ") == ()


# ----- masking, deltas, rendering --------------------------------------------------------------


def test_masked_prompt_replaces_exactly_the_span():
    assert masked_prompt(PROMPT, (0, 16)) == f"{MASK_TOKEN} Answer Yes or No. Be brief."
    assert masked_prompt(PROMPT, (35, 44)) == f"You are a judge. Answer Yes or No. {MASK_TOKEN}"
    assert MASK_TOKEN == "<MASK>"


def test_ablation_deltas_are_masked_minus_base():
    assert mask_deltas(1.0, [1.5, 0.75, 1.005]) == pytest.approx((0.5, -0.25, 0.005))
    assert mask_deltas(2.0, []) == ()


def test_render_analysis_labels_each_unit():
    lines = render_masking(["A.", "B.", "C.", "D."], [0.231, -0.052, 0.003, -0.01]).splitlines()
    assert lines == [
        '- "A." helps (removing it raises the loss by 0.231)',
        '- "B." hurts (removing it lowers the loss by 0.052)',
        '- "C." neutral (change 0.003)',
        '- "D." neutral (change 0.010)',
    ]


def test_render_analysis_tolerance_and_layout():
    assert "neutral" in render_masking(["A."], [0.05], neutral_tolerance=0.1)
    assert "helps" in render_masking(["A."], [0.05], neutral_tolerance=0.01)
    text = render_masking(["Line one.\nLine two."], [0.5])
    assert text == '- "Line one. Line two." helps (removing it raises the loss by 0.500)'


def test_render_analysis_does_not_call_an_unscored_unit_harmful():
    text = render_masking(["A."], [math.nan])
    assert "unmeasured" in text and "hurts" not in text


def test_render_analysis_without_units_and_length_mismatch():
    assert "No removable units" in render_masking([], [])
    with pytest.raises(ValueError, match="2 units but 1 deltas"):
        render_masking(["A", "B"], [0.1])


# ----- segmentation_request --------------------------------------------------------------------


def test_segmentation_request_holds_the_prompt_the_limit_and_an_example():
    prompt = "Line one.\nLine two."
    request = segmentation_request(prompt, max_units=4)
    assert f"###\n{prompt}\n###" in request
    assert "at most 4" in request
    assert "<mask>" in request and "</mask>" in request
    # The fake engines and the rewrite step tell requests apart by <prompt>.
    assert "<prompt>" not in request
