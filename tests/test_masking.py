import pytest

from pmpo_ray.pmpo.masking import (
    MASK_TOKEN,
    ablation_deltas,
    masked_prompt,
    parse_mask_units,
    render_analysis,
    segment,
    segmentation_request,
    sentence_spans,
)

PROMPT = "You are a judge. Answer Yes or No. Be brief."


def test_good_segmentation_maps_to_exact_spans():
    output = "<mask>You are a judge.</mask> <mask> Answer Yes or No. </mask> Be brief."
    spans, reason = parse_mask_units(PROMPT, output)
    assert reason == ""
    assert [PROMPT[s:e] for s, e in spans] == ["You are a judge.", "Answer Yes or No."]


@pytest.mark.parametrize(
    "output, reason",
    [
        ("<mask>You are <mask>a judge.</mask></mask>", "nested"),
        ("<mask>You are a judge.</mask> <mask>You are a judge.</mask>", "overlap"),
        ("<mask>You are a referee.</mask>", "not verbatim"),
        ("You are a judge. Answer Yes or No.", "no <mask> units"),
        ("<mask>You are a judge.", "unbalanced"),
        ("You are a judge.</mask>", "unbalanced"),
        (
            "<mask>You</mask><mask>are</mask><mask>a</mask><mask>judge.</mask><mask>Answer</mask><mask>Yes</mask>",
            "too many",
        ),
        ("<mask>  </mask>", "empty"),
    ],
)
def test_bad_segmentations_are_rejected_with_a_reason(output, reason):
    spans, why = parse_mask_units(PROMPT, output)
    assert spans is None and reason in why


def test_segment_falls_back_to_sentences_and_records_why():
    result = segment(PROMPT, "<mask>Something else.</mask>")
    assert result.method == "sentences"
    assert "not verbatim" in result.rejected_reason
    assert result.units(PROMPT) == ("You are a judge.", "Answer Yes or No.", "Be brief.")
    assert segment(PROMPT, None).rejected_reason == "no segmentation output"
    assert segment(PROMPT, "<mask>Be brief.</mask>").method == "model"


def test_sentence_spans_split_lines_and_merge_to_the_limit():
    prompt = "One. Two! Three?\nFour\n\nFive. Six. Seven."
    spans = sentence_spans(prompt, max_units=3)
    assert len(spans) == 3
    covered = "".join(prompt[s:e] for s, e in spans)
    assert covered.replace(" ", "").replace("\n", "") == prompt.replace(" ", "").replace("\n", "")
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert sentence_spans("Just one sentence") == ((0, 17),)
    assert sentence_spans("   ") == ()


def test_masking_ablation_and_rendering():
    assert masked_prompt(PROMPT, (0, 16)) == f"{MASK_TOKEN} Answer Yes or No. Be brief."
    assert ablation_deltas(1.0, [1.5, 0.75, 1.005]) == pytest.approx((0.5, -0.25, 0.005))
    text = render_analysis(["A.", "B.", "C."], [0.5, -0.25, 0.005])
    lines = text.splitlines()
    assert '"A." helps' in lines[0] and '"B." hurts' in lines[1] and '"C." neutral' in lines[2]
    assert "No removable units" in render_analysis([], [])
    with pytest.raises(ValueError, match="2 units but 1 deltas"):
        render_analysis(["A", "B"], [0.1])


def test_segmentation_request_holds_the_prompt_and_the_limit():
    request = segmentation_request(PROMPT, max_units=4)
    assert PROMPT in request and "at most 4" in request
