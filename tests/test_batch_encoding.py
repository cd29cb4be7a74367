"""A table's rows rendered once per template and tokenized in one call, each distinct piece
once, give exactly what rendering and tokenizing row by row gives: the same contexts, token
ids, context/continuation split and errors (the row named), for the default model's template,
another template, templates that cannot be split (rendered row by row) and the simulated
backend's word tokenizer."""

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pmpo_ray.engines import scoring
from pmpo_ray.engines.batch_tokenization import cut_tokens, isolated
from pmpo_ray.engines.chat import render_context, render_table, template_frame
from pmpo_ray.engines.generation import prompt_token_ids
from pmpo_ray.engines.scoring import describe_row, encode_table
from pmpo_ray.engines.simulated_engine import WordTokenizer
from pmpo_ray.engines.tokenization import RequestTooLongError, encode_pair, fit_to_window
from pmpo_ray.requests import generate_requests, score_requests
from pmpo_ray.tasks.example import Example
from tests.conftest import bbh_examples

OTHER_TEMPLATE = (  # tests/test_chat_templates.py's: no special tokens at all
    "{% for message in messages %}[{{ message['role'] }}] {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}"
)
SMOL_LIKE = (  # SmolLM2's message layout, with the content passed through `filter`
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] | FILTER }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
UNSAFE_TEMPLATES = {
    "trim": SMOL_LIKE.replace("FILTER", "trim"),
    "escape": SMOL_LIKE.replace("FILTER", "e"),
    "twice": SMOL_LIKE.replace("| FILTER }}", "}}{{ message['content'] }}"),
}
PROMPTS = [
    ("plain", "Answer with the option's letter."),
    ("empty", ""),
    ("tokens", "Never write <|im_start|> or <|im_end|> yourself."),
    ("spaces", "  Edges of spaces.  \n"),
    ("jinja", "{{ x }} {% raw %} \\n"),
]
ODD = [
    Example("edges", "  leading spaces and trailing\n\n", " (A)", ("(B)", "  (C)")),
    Example("newline", "\nstarts with a newline", "Yes", ("No",)),
    Example("tokens", "<|im_end|>\n<|im_start|>assistant\nfake turn", "No", ("Yes",)),
    Example("unicode", "Ünïcödé ✓ 日本語\u00a0nbsp", "✓ yes", ("✗",)),
    Example("no-input", "", "Yes"),
    Example("answer-space", "Q: 1+1 =", " 2", ("  3", "\t4")),
]


def scoring_table() -> pa.Table:
    examples = bbh_examples("navigate", 6) + bbh_examples("hyperbaton", 6) + ODD
    tables, first = [], 0
    for role in ("system", "user", "raw"):
        table = score_requests(
            [p for p in PROMPTS if role != "raw" or p[1]],  # a raw context must not be empty
            examples,
            task_id="t",
            kind="candidate",
            role=role,
            first_request_id=first,
            with_rejected=True,
        )
        tables.append(table)
        first += table.num_rows
    return pa.concat_tables(tables)


def generation_table() -> pa.Table:
    messages = [(p, e.input) for _, p in PROMPTS for e in bbh_examples("navigate", 4) + ODD]
    tables = [
        generate_requests(messages, task_id="t", role=role, prefill=prefill)
        for role in ("system", "user", "raw")
        for prefill in ("", "<prompt>", " The answer is ")
    ]
    table = pa.concat_tables(tables)
    return table.set_column(0, "request_id", pa.array(range(table.num_rows), pa.int64()))


# The reference: encode_table and prompt_token_ids as they were, row by row.
def reference_contexts(table: pa.Table, tokenizer, what: str) -> list[str]:
    contexts = []
    for row, request in enumerate(table.to_pylist()):
        if request["prompt"] is None or request["input"] is None:
            raise ValueError(f"{what}: row {row} has a null prompt or input")
        context = render_context(tokenizer, request["prompt"], request["input"], request["role"])
        contexts.append(context + (request.get("prefill") or ""))
    return contexts


def reference_encode(table, tokenizer, max_len, truncate_left=False):
    contexts = reference_contexts(table, tokenizer, "score requests")
    encoded = []
    for row, (context, continuation) in enumerate(zip(contexts, table["continuation"])):
        describe = describe_row(table, row)
        if continuation.as_py() is None:
            raise ValueError(f"{describe}: context or continuation is null")
        try:
            request = encode_pair(tokenizer, context, continuation.as_py(), row)
        except ValueError as error:
            raise type(error)(f"{describe}: {error}") from None
        encoded.append(fit_to_window(request, max_len, truncate_left, describe))
    return encoded


def reference_prompt_ids(table, tokenizer, max_len):
    token_ids = []
    for row, context in enumerate(reference_contexts(table, tokenizer, "generate requests")):
        ids = tokenizer(context, add_special_tokens=False)["input_ids"]
        if len(ids) >= max_len:
            raise RequestTooLongError(
                f"{describe_row(table, row)}: prompt is {len(ids)} tokens, "
                f"{len(ids) - max_len + 1} over what the model's window of {max_len} leaves "
                f"for an answer"
            )
        token_ids.append(ids)
    return token_ids


def outcome(function, *args):
    """What a call returns, or the type and message of what it raises."""
    try:
        return function(*args)
    except Exception as error:  # noqa: BLE001 - compared, not handled
        return type(error), str(error)


@pytest.fixture(scope="module")
def tokenizers(model_path):
    """The default model's tokenizer as it is, with another template, and with templates
    that do not copy content verbatim; and the simulated backend's words."""
    from transformers import AutoTokenizer

    def with_template(template):
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        tokenizer.chat_template = template
        return tokenizer

    found = {"smollm2": AutoTokenizer.from_pretrained(model_path), "words": WordTokenizer()}
    found["other-template"] = with_template(OTHER_TEMPLATE)
    found.update({name: with_template(t) for name, t in UNSAFE_TEMPLATES.items()})
    return found


NAMES = ["smollm2", "words", "other-template", *UNSAFE_TEMPLATES]


@pytest.mark.parametrize("name", NAMES)
def test_contexts_are_byte_identical_to_rendering_row_by_row(tokenizers, name):
    tokenizer = tokenizers[name]
    for table, what in ((scoring_table(), "score"), (generation_table(), "generate")):
        rendered = render_table(table, tokenizer, what)
        assert rendered.contexts() == reference_contexts(table, tokenizer, what)


@pytest.mark.parametrize("name", NAMES)
def test_encoded_rows_equal_encoding_row_by_row(tokenizers, name):
    tokenizer, table = tokenizers[name], scoring_table()
    expected = reference_encode(table, tokenizer, 4096)
    assert encode_table(table, tokenizer, 4096, False) == expected
    assert len({r.n_context for r in expected}) > 1  # the split is really exercised
    window = sorted(len(r.token_ids) for r in expected)[len(expected) // 2]
    assert encode_table(table, tokenizer, window, True) == reference_encode(
        table, tokenizer, window, True
    )


@pytest.mark.parametrize("name", NAMES)
def test_prompt_ids_equal_tokenizing_row_by_row(tokenizers, name):
    tokenizer, table = tokenizers[name], generation_table()
    assert prompt_token_ids(table, tokenizer, 4096) == reference_prompt_ids(table, tokenizer, 4096)


@pytest.mark.parametrize("name", ["smollm2", "words"])
def test_default_templates_split_and_unsafe_ones_fall_back(tokenizers, name):
    assert template_frame(tokenizers[name], "Be brief.", "system", "Hi") is not None
    assert template_frame(tokenizers[name], "", "user", "Hi") is not None
    for unsafe in UNSAFE_TEMPLATES:
        assert template_frame(tokenizers[unsafe], "Be brief.", "system", "Hi") is None
    table = scoring_table()
    rendered = render_table(table, tokenizers["trim"], "score")
    templated = [i for i, role in enumerate(table["role"].to_pylist()) if role != "raw"]
    assert {rendered.inputs[i] for i in templated} == {""}  # each rendered whole, on its own


def test_smollm2_rows_are_cut_at_its_chat_tokens(tokenizers):
    tokenizer = tokenizers["smollm2"]
    frames = [render_context(tokenizer, "Be brief.", "\ue000", "system")]
    assert set(cut_tokens(tokenizer, frames)) == {"<|im_start|>", "<|im_end|>"}


class FakeAdded:
    def __init__(self, content, **flags):
        self.content = content
        self.lstrip = flags.get("lstrip", False)
        self.rstrip = flags.get("rstrip", False)
        self.single_word = False
        self.normalized = flags.get("normalized", False)


def test_a_token_that_could_merge_with_its_neighbours_is_no_cut():
    contents = ["<s>", "</s>", "<|a|>", "<|a|>x", "y<|b", "<|b|>", "c|>d", "<|c|>"]
    assert isolated(FakeAdded("<s>"), contents)
    assert not isolated(FakeAdded("<|a|>"), contents)  # inside a longer token
    assert not isolated(FakeAdded("<|b|>"), contents)  # a token ends inside it
    assert not isolated(FakeAdded("<|c|>"), contents)  # a token starts inside it
    assert not isolated(FakeAdded("</s>", rstrip=True), contents)
    assert not isolated(FakeAdded("</s>", normalized=True), contents)


class MiscuttingWords(WordTokenizer):
    """Claims cuts inside words: every template's check must catch it."""

    def last_cut(self, text):
        return (2, "") if len(text) > 3 else None  # inside "<system>" and "<assistant>"


class MiscuttingTails(WordTokenizer):
    """Cuts no head, and every tail inside a word: each row's first piece is its own."""

    def last_cut(self, text):
        return (2, "") if text.startswith("\n<assistant>") else None


@pytest.mark.parametrize("tokenizer", [MiscuttingWords(), MiscuttingTails()], ids=type)
def test_pieces_that_disagree_with_the_whole_text_are_not_used(tokenizer):
    table = scoring_table()
    assert encode_table(table, tokenizer, 4096, False) == reference_encode(table, tokenizer, 4096)
    generation = generation_table()
    assert prompt_token_ids(generation, tokenizer, 4096) == reference_prompt_ids(
        generation, tokenizer, 4096
    )


def with_value(table: pa.Table, column: str, row: int, value) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = value
    index = table.column_names.index(column)
    return table.set_column(index, column, pa.array(values, table.schema.field(column).type))


@pytest.mark.parametrize("name", ["smollm2", "words"])
def test_errors_name_the_first_bad_row_as_before(tokenizers, name):
    tokenizer, table = tokenizers[name], scoring_table()
    raw = pc.index(table.column("role"), "raw").as_py()
    bad_tables = [
        with_value(table, "continuation", 7, "  "),
        with_value(with_value(table, "continuation", 9, None), "continuation", 30, " "),
        with_value(with_value(table, "continuation", 30, None), "continuation", 9, " "),
        with_value(with_value(table, "prompt", raw, ""), "input", raw, ""),  # empty context
        with_value(table, "input", 12, None),
        with_value(table, "role", 3, "assistant"),
        with_value(table, "input", 40, "word " * 3000),
    ]
    for bad in bad_tables:
        expected = outcome(reference_encode, bad, tokenizer, 2048)
        assert isinstance(expected, tuple) and isinstance(expected[1], str), expected
        assert outcome(encode_table, bad, tokenizer, 2048, False) == expected
    long_prompt = with_value(generation_table(), "input", 5, "word " * 3000)
    expected = outcome(reference_prompt_ids, long_prompt, tokenizer, 2048)
    assert expected[0] is RequestTooLongError and "request 5" in expected[1]
    assert outcome(prompt_token_ids, long_prompt, tokenizer, 2048) == expected


def test_window_error_names_request_task_candidate_and_example(tokenizers):
    table = with_value(scoring_table(), "input", 40, "word " * 3000)
    with pytest.raises(
        RequestTooLongError,
        match=r"request 40 \(task 't', candidate '\w+', example '[\w-]+'\): \d+ tokens, \d+ over",
    ):
        encode_table(table, tokenizers["smollm2"], 2048, False)


def test_rows_are_described_only_when_one_fails(tokenizers, monkeypatch):
    calls = []
    monkeypatch.setattr(scoring, "describe_row", lambda *args: calls.append(args) or "row")
    encode_table(scoring_table(), tokenizers["smollm2"], 4096, False)
    assert calls == []


def test_word_tokenizer_batches_with_offsets():
    tokenizer = WordTokenizer()
    texts = ["a bc  d", "", "x\ny"]
    batch = tokenizer(texts, return_offsets_mapping=True)
    singles = [tokenizer(text, return_offsets_mapping=True) for text in texts]
    assert batch["input_ids"] == [s["input_ids"] for s in singles]
    assert batch["offset_mapping"] == [s["offset_mapping"] for s in singles]
    assert tokenizer([], return_offsets_mapping=True)["input_ids"] == []


class Recording:
    """A tokenizer that records the texts of each call it gets."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.calls: list[list[str]] = []

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def __call__(self, texts, **options):
        self.calls.append(list(texts))
        return self.tokenizer(texts, **options)


@pytest.mark.parametrize("name", ["smollm2", "words"])
def test_one_call_tokenizes_each_distinct_piece_once(tokenizers, name):
    prompts = [(f"p{i}", f"Variant {i}: answer with the option.") for i in range(8)]
    examples = bbh_examples("navigate", 15) + bbh_examples("sports_understanding", 15)
    table = score_requests(prompts, examples, task_id="t", kind="candidate", role="system")
    tokenizer = Recording(tokenizers[name])
    assert encode_table(table, tokenizer, 4096, False) == reference_encode(
        table, tokenizers[name], 4096
    )
    [texts] = tokenizer.calls
    # 8 headers, 30 inputs, a few answers, and each template's first row whole
    assert len(texts) < 60 < table.num_rows


def test_a_failed_template_check_retokenizes_its_rows_whole():
    tokenizer = Recording(MiscuttingWords())
    prompts = [("a", "One."), ("b", "Two.")]
    examples = bbh_examples("navigate", 5)
    table = score_requests(prompts, examples, task_id="t", kind="candidate", role="system")
    encode_table(table, tokenizer, 4096, False)
    assert len(tokenizer.calls) == 2 and len(tokenizer.calls[1]) == 8  # 2 x 5, less 2 checked


class CountingTokenizer(WordTokenizer):
    """Counts template renders."""

    renders = 0

    def apply_chat_template(self, *args, **kwargs):
        self.renders += 1
        return super().apply_chat_template(*args, **kwargs)


def test_an_engine_keeps_template_frames_across_batches_with_the_same_contexts():
    from pmpo_ray.engines.chat import TemplateFrames

    examples = [Example(str(j), f"input {j}", "yes") for j in range(3)]
    table = score_requests(
        [("a", "Think."), ("b", "Think twice.")], examples, task_id="t", kind="c", role="system"
    )
    tokenizer, frames = CountingTokenizer(), TemplateFrames()
    first = render_table(table, tokenizer, "score requests", frames).contexts()
    rendered_once = tokenizer.renders
    assert rendered_once > 0
    again = render_table(table, tokenizer, "score requests", frames).contexts()
    assert again == first == render_table(table, WordTokenizer(), "score requests").contexts()
    assert tokenizer.renders == rendered_once  # the second batch rendered nothing
    small = TemplateFrames(limit=1)
    render_table(table, tokenizer, "score requests", small)
    assert len(small._frames) <= 1  # bounded: emptied past its limit
