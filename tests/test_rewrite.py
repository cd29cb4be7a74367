from __future__ import annotations

import pytest

from pmpo_ray.pmpo.rewrite import (
    REJECTION_REASONS,
    Vetted,
    complete_prefilled,
    extract_prompt,
    rewrite_request,
    vet_rewrite,
)
from pmpo_ray.tasks.example import Example

FIELDS = dict(
    task_description="Decide whether the sentence is sarcastic.",
    user_input="Oh great, another Monday.",
    true_answer="(A) sarcastic",
    mask_analysis="unit 1 helps (+0.30); unit 2 hurts (-0.12); unit 3 neutral",
    current_prompt="Read the sentence. Answer with the option letter.",
)


def word_count(text: str) -> int:
    return len(text.split())


def vet(
    output: str,
    *,
    current: str = "Old prompt.",
    seen: set[str] | None = None,
    limit: int = 50,
    example: Example | None = None,
) -> Vetted:
    return vet_rewrite(
        output,
        current_prompt=current,
        seen=seen if seen is not None else set(),
        max_prompt_tokens=limit,
        count_tokens=word_count,
        examples=[example] if example else (),
    )


# ----- rewrite_request ---------------------------------------------------------------------


@pytest.mark.parametrize("style", ["long", "short"])
def test_templates_contain_every_field_value_and_no_placeholder(style):
    request = rewrite_request(style, **FIELDS)
    for value in FIELDS.values():
        assert value in request
    for name in FIELDS:
        assert "{" + name + "}" not in request
    assert "<prompt>" in request and "</prompt>" in request


@pytest.mark.parametrize("style", ["long", "short"])
def test_braces_and_placeholder_text_inside_fields_survive(style):
    fields = dict(
        FIELDS,
        user_input='Parse {"a": 1} and {0} and {}',
        true_answer="{true_answer} {current_prompt}",  # must not be expanded a second time
        current_prompt="Use {braces} as-is}{",
    )
    request = rewrite_request(style, **fields)
    assert 'Parse {"a": 1} and {0} and {}' in request
    assert "{true_answer} {current_prompt}" in request
    assert "Use {braces} as-is}{" in request
    assert request.count("Use {braces} as-is}{") == 1


def test_long_template_asks_for_diagnosis_strategies_and_no_overfitting():
    request = rewrite_request("long", **FIELDS).lower()
    for word in (
        "diagnos",
        "structure",
        "rules",
        "remove",
        "rephrase",
        "simplify",
        "expand",
        "consolidate",
        "overfit",
    ):
        assert word in request
    assert len(request) > 3 * len(rewrite_request("short", **FIELDS))


def test_short_template_is_a_few_lines_ending_with_the_instruction():
    request = rewrite_request("short", **FIELDS)
    assert len(request.splitlines()) <= 8
    assert request.rstrip().endswith("<prompt></prompt>.")


def test_unknown_style_is_rejected():
    with pytest.raises(ValueError, match="style"):
        rewrite_request("medium", **FIELDS)  # type: ignore[arg-type]


# ----- extract_prompt ----------------------------------------------------------------------


def test_extract_prompt_returns_stripped_text_of_a_complete_pair():
    output = (
        "The prompt lacks a format rule.\n<prompt>\n  Answer with one letter.\n</prompt>\nDone."
    )
    assert extract_prompt(output) == "Answer with one letter."


def test_extract_prompt_tags_are_case_insensitive_and_span_lines():
    assert extract_prompt("<PROMPT>Line one.\nLine two.</Prompt>") == "Line one.\nLine two."


@pytest.mark.parametrize(
    "output", ["no tags at all", "<prompt>never closed", "</prompt>backwards<prompt>", ""]
)
def test_extract_prompt_without_a_complete_pair_is_none(output):
    assert extract_prompt(output) is None


def test_extract_prompt_skips_an_echoed_empty_pair():
    assert (
        extract_prompt("Write it inside <prompt></prompt>. <prompt>Real one.</prompt>")
        == "Real one."
    )
    assert extract_prompt("<prompt> </prompt>") == ""


def test_extract_prompt_takes_the_first_of_several_pairs():
    assert extract_prompt("<prompt>first</prompt> then <prompt>second</prompt>") == "first"


def test_extract_prompt_skips_an_unclosed_opening_tag_before_a_complete_pair():
    assert extract_prompt("draft: <prompt>abandoned ... <prompt>real one</prompt>") == "real one"


# ----- vet_rewrite -------------------------------------------------------------------------


def test_accepted_rewrite_is_stripped_with_empty_reason():
    seen = {"Other prompt."}
    result = vet("Because...\n<prompt>  New, better prompt.  </prompt>", seen=seen)
    assert result == Vetted("New, better prompt.", "")
    assert seen == {"Other prompt."}  # read, not updated


def test_rejects_output_without_prompt_tag():
    assert vet("Here is a better prompt: Be precise.") == Vetted(None, "no_prompt_tag")


def test_rejects_empty_prompt():
    assert vet("<prompt>   \n </prompt>") == Vetted(None, "empty")


def test_rejects_unchanged_prompt_after_strip():
    assert vet("<prompt>Old prompt.</prompt>", current="  Old prompt.\n") == Vetted(
        None, "unchanged"
    )


def test_rejects_duplicate_of_a_seen_prompt_after_strip():
    result = vet("<prompt>Seen before.</prompt>", seen={"  Seen before.\n", "x"})
    assert result == Vetted(None, "duplicate")


def test_rejects_too_long_prompt_but_accepts_exactly_the_limit():
    assert vet("<prompt>one two three four</prompt>", limit=3) == Vetted(None, "too_long")
    assert vet("<prompt>one two three</prompt>", limit=3) == Vetted("one two three", "")


def test_tokenizer_is_not_called_on_prompts_already_rejected():
    calls = []

    def counting(text: str) -> int:
        calls.append(text)
        return 1

    vet_rewrite(
        "<prompt>Old</prompt>",
        current_prompt="Old",
        seen=set(),
        max_prompt_tokens=5,
        count_tokens=counting,
    )
    assert calls == []


def test_every_rejection_reason_is_in_the_published_vocabulary():
    reasons = {
        vet("nothing").reason,
        vet("<prompt></prompt>").reason,
        vet("<prompt>Old prompt.</prompt>").reason,
        vet("<prompt>dup</prompt>", seen={"dup"}).reason,
        vet("<prompt>a b c</prompt>", limit=1).reason,
        vet("<prompt>The answer is no.</prompt>", example=Example("e", "Is it?", "no")).reason,
        vet(
            "<prompt>- Yes\n- No</prompt>",
            example=Example("e", "Q\nOptions:\n- Yes\n- No", "No", ("Yes",)),
        ).reason,
    }
    assert reasons == set(REJECTION_REASONS)


# ----- completing a prefilled answer: EOS, the </prompt> stop string, the token budget -----


@pytest.mark.parametrize(
    "output",
    ["Answer with the letter.", "Answer with the letter.</prompt> More text."],
    ids=["eos-or-stop-string", "closed-by-the-model"],
)
def test_a_finished_answer_is_closed_once(output):
    text = complete_prefilled("<prompt>", output, finished=True)
    assert extract_prompt(text) == "Answer with the letter."


def test_a_stop_string_finish_without_prefill_closes_the_opened_pair():
    # the long style: the model diagnoses, opens the tag, and the engine stops at </prompt>
    text = complete_prefilled("", "The prompt is vague. <prompt>Name the answer.", True)
    assert extract_prompt(text) == "Name the answer."
    assert extract_prompt(complete_prefilled("", "No tag at all.", True)) is None


@pytest.mark.parametrize(
    "output, kept",
    [
        ("Read the question. Compare the options and", "Read the question."),
        ('Say "yes." Then stop! Then ex', 'Say "yes." Then stop!'),
        ("Steps:\n1. Read it.\n2. Check", "Steps:\n1. Read it."),  # "2." is no sentence end
        ("Is it (A)? Pick one (B). Then", "Is it (A)? Pick one (B)."),
        ("Use the 3.5 rule and", None),  # a decimal point ends no sentence
        ("Step 1-2. Name (2). Then (3) and", "Step 1-2. Name (2)."),
        ("Read the question and", None),
    ],
)
def test_a_cut_off_answer_is_kept_up_to_its_last_sentence_end(output, kept):
    text = complete_prefilled("<prompt>", output, finished=False, keep_cut=True)
    assert extract_prompt(text) == kept


def test_a_cut_off_answer_is_rejected_without_keep_cut():
    output = "Read the question. Compare the options and"
    assert extract_prompt(complete_prefilled("<prompt>", output, finished=False)) is None
    assert vet(complete_prefilled("<prompt>", output, False)).reason == "no_prompt_tag"


def test_keep_cut_only_closes_the_last_unclosed_pair():
    echoed = "</prompt> Then: <prompt>Be brief. Answer"  # the echoed empty pair, then a cut one
    assert extract_prompt(complete_prefilled("<prompt>", echoed, False, True)) == "Be brief."
    closed = "Be brief.</prompt> and then more words"  # complete already: left as it is
    assert complete_prefilled("<prompt>", closed, False, True) == "<prompt>" + closed
    # nothing opened (no prefill): nothing to keep
    assert complete_prefilled("", "Be brief. More", False, True) == "Be brief. More"


def test_a_rewrite_request_carries_its_stop_string():
    from pmpo_ray.engines.generation import cut_at_stop
    from pmpo_ray.pmpo.rewrite import CLOSING_TAG, meta_prompt_row

    row = meta_prompt_row(0, task_id="t", message="m", max_tokens=8, stop=(CLOSING_TAG,))
    assert row["stop"] == ["</prompt>"]
    assert meta_prompt_row(0, task_id="t", message="m", max_tokens=8)["stop"] == []  # greedy
    # what an engine answers (engines/generation.py): the text before the earliest stop string
    assert cut_at_stop("Be brief.</prompt> more</prompt>", ["</prompt>", "\n\n"]) == "Be brief."
    assert cut_at_stop("Be brief.", ["</prompt>"]) is None
