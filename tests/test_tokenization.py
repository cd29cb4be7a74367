import pytest

from pmpo_ray.engines.tokenization import (
    EmptyContinuationError,
    EncodedRequest,
    RequestTooLongError,
    continuation_start,
    encode_pair,
    fit_to_window,
    move_boundary_whitespace,
)


def test_spaces_move_to_the_continuation_but_newlines_stay():
    assert move_boundary_whitespace("A: ", "yes") == ("A:", " yes")
    assert move_boundary_whitespace("A:\t ", "yes") == ("A:", "\t yes")
    assert move_boundary_whitespace("assistant\n", "yes") == ("assistant\n", "yes")


def test_straddling_token_counts_as_continuation():
    offsets = [(0, 2), (2, 5), (5, 9)]
    assert continuation_start(offsets, 5) == 2
    assert continuation_start(offsets, 4) == 1
    assert continuation_start(offsets, 9) == 3


def test_split_matches_joint_tokenization(tokenizer):
    request = encode_pair(tokenizer, "Question: is it raining? Answer:", " No", row=0)
    joint = tokenizer("Question: is it raining? Answer: No", add_special_tokens=False)
    assert list(request.token_ids) == joint["input_ids"]
    answer = tokenizer.decode(request.token_ids[request.n_context :])
    assert answer == " No"
    assert request.n_continuation == 1


def test_space_at_end_of_context_is_scored_with_the_answer(tokenizer):
    with_space = encode_pair(tokenizer, "Answer: ", "No", row=0)
    without = encode_pair(tokenizer, "Answer:", " No", row=0)
    assert with_space == without


def test_chat_template_newline_stays_in_context(tokenizer):
    context = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert context.endswith("\n")
    request = encode_pair(tokenizer, context, "Hello there", row=3)
    assert tokenizer.decode(request.token_ids[request.n_context :]) == "Hello there"


def test_empty_answer_and_empty_context_are_errors(tokenizer):
    with pytest.raises(EmptyContinuationError, match="row 4.*empty"):
        encode_pair(tokenizer, "Question", "  ", row=4)
    with pytest.raises(EmptyContinuationError, match="context is empty"):
        encode_pair(tokenizer, "", "answer", row=5)


def test_window_error_names_row_and_excess():
    request = EncodedRequest(row=0, token_ids=tuple(range(12)), n_context=9)
    with pytest.raises(RequestTooLongError, match=r"request 7: 12 tokens, 2 over .* window of 10"):
        fit_to_window(request, 10, truncate_left=False, describe="request 7")


def test_truncation_drops_context_from_the_left_only():
    request = EncodedRequest(row=0, token_ids=tuple(range(12)), n_context=9)
    fitted = fit_to_window(request, 10, truncate_left=True, describe="r")
    assert fitted.token_ids == tuple(range(2, 12))
    assert fitted.n_continuation == request.n_continuation
    assert fitted.truncated_tokens == 2


def test_truncation_cannot_cut_into_the_answer():
    request = EncodedRequest(row=0, token_ids=tuple(range(12)), n_context=2)
    with pytest.raises(RequestTooLongError, match="continuation alone"):
        fit_to_window(request, 10, truncate_left=True, describe="r")
