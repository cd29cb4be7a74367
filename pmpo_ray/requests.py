"""Arrow schemas of scoring and generation requests, and the builders that fill them.

A request says what the model should read as chat parts, never as rendered text: the
instruction `prompt`, where it goes (`role`), the user's `input`, and for generation the
`prefill` the answer starts with. Each engine renders them with its own model's chat template
(engines/chat.py), so a rewriter from another model family than the scorer reads its own
format. A scoring request is one teacher-forced pass: we read the log-probability the model
gives `continuation` after the rendered context. The row keeps which prompt (`candidate_id`)
and which example (`example_id`) it came from, so a backend can group rows that share a prompt
prefix and the optimizer can aggregate per candidate without parsing text.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import pyarrow as pa

from pmpo_ray.tasks.example import Example

SCORE_REQUEST_SCHEMA = pa.schema(
    [
        ("request_id", pa.int64()),
        ("task_id", pa.string()),
        ("candidate_id", pa.string()),
        ("example_id", pa.string()),
        ("kind", pa.string()),  # candidate | ablation | holdout | adhoc
        ("prompt", pa.string()),  # the instruction being scored; "" for none
        ("role", pa.string()),  # system | user | raw (see engines/chat.py)
        ("input", pa.string()),  # the user message
        ("continuation", pa.string()),
        ("weight", pa.float64()),  # sign/weight for preference pairs; 1.0 otherwise
    ]
)

SCORE_RESULT_FIELDS = [
    pa.field("logprob_sum", pa.float64()),
    pa.field("n_tokens", pa.int64()),
    pa.field("is_greedy", pa.bool_()),
    pa.field("n_input_tokens", pa.int64()),  # context + continuation: what a naive pass costs
    # what the engine actually computed: less when a shared prefix was computed once
    pa.field("n_computed_tokens", pa.int64()),
]
TOKEN_LOGPROBS_FIELD = pa.field("token_logprobs", pa.list_(pa.float32()))

GENERATE_REQUEST_SCHEMA = pa.schema(
    [
        ("request_id", pa.int64()),
        ("task_id", pa.string()),
        ("prompt", pa.string()),
        ("role", pa.string()),
        ("input", pa.string()),
        ("prefill", pa.string()),  # the start of the answer, e.g. an opened tag
        ("n", pa.int32()),
        ("temperature", pa.float32()),
        ("top_p", pa.float32()),
        ("max_tokens", pa.int32()),
        ("seed", pa.int64()),
        # strings that end the answer where the model writes one, left out of the text; the
        # finish reason is then "stop", as at end-of-sequence. Null or [] for none.
        ("stop", pa.list_(pa.string())),
    ]
)

GENERATE_RESULT_SCHEMA = pa.schema(
    [
        ("request_id", pa.int64()),
        ("sample_index", pa.int32()),
        ("text", pa.string()),
        ("n_tokens", pa.int64()),
        ("finish_reason", pa.string()),
        ("n_prompt_tokens", pa.int64()),  # the rendered prompt, in the generating model's tokens
    ]
)

CHAT_COLUMNS = ("prompt", "role", "input")
REQUIRED_SCORE_COLUMNS = ("request_id", *CHAT_COLUMNS, "continuation")
REQUIRED_GENERATE_COLUMNS = ("request_id", *CHAT_COLUMNS)
Role = Literal["system", "user", "raw"]


def score_requests(
    prompts: Sequence[tuple[str, str]],
    examples: Sequence[Example],
    *,
    task_id: str,
    kind: str,
    role: Role,
    first_request_id: int = 0,
    with_rejected: bool = False,
) -> pa.Table:
    """The cross product prompts x examples; `prompts` holds (candidate_id, text) pairs.

    Each example gives a row for its target (weight +1) and, with `with_rejected`, one row per
    rejected answer (weight -1) sharing the same context.
    """
    # Built column by column with Arrow `take`: every candidate repeats the same block of
    # example rows, and a driver builds these for thousands of tasks per round (a dict per row
    # cost ~5 µs a row; this, well under 1).
    block: dict[str, list] = {"example_id": [], "input": [], "continuation": [], "weight": []}
    for example in examples:
        answers = [(example.target, 1.0)]
        if with_rejected:
            answers += [(rejected, -1.0) for rejected in example.rejected]
        for continuation, weight in answers:
            block["example_id"].append(example.example_id)
            block["input"].append(example.input)
            block["continuation"].append(continuation)
            block["weight"].append(weight)
    size, n_rows = len(block["weight"]), len(block["weight"]) * len(prompts)
    per_candidate = pa.array(np.repeat(np.arange(len(prompts)), size))
    per_example = pa.array(np.tile(np.arange(size), len(prompts)))
    same = pa.array(np.zeros(n_rows, dtype=np.int64))

    def repeated(values: Sequence, index: pa.Array, kind: pa.DataType) -> pa.Array:
        return pa.array(values, type=kind).take(index)

    columns = {
        "request_id": pa.array(np.arange(first_request_id, first_request_id + n_rows)),
        "task_id": repeated([task_id], same, pa.string()),
        "candidate_id": repeated([c for c, _ in prompts], per_candidate, pa.string()),
        "example_id": repeated(block["example_id"], per_example, pa.string()),
        "kind": repeated([kind], same, pa.string()),
        "prompt": repeated([p for _, p in prompts], per_candidate, pa.string()),
        "role": repeated([role], same, pa.string()),
        "input": repeated(block["input"], per_example, pa.string()),
        "continuation": repeated(block["continuation"], per_example, pa.string()),
        "weight": repeated(block["weight"], per_example, pa.float64()),
    }
    arrays = [columns[field.name].cast(field.type) for field in SCORE_REQUEST_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=SCORE_REQUEST_SCHEMA)


def generate_requests(
    messages: Sequence[tuple[str, str]],
    *,
    task_id: str,
    role: Role = "system",
    prefill: str = "",
    n: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_tokens: int = 256,
    seed: int = 0,
    stop: Sequence[str] = (),
) -> pa.Table:
    """One row per (prompt, input) pair; request i is seeded with seed + i so reruns sample
    the same."""
    rows = [
        generation_row(
            index,
            task_id=task_id,
            prompt=prompt,
            role=role,
            user_input=user_input,
            prefill=prefill,
            n=n,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            seed=seed + index,
            stop=stop,
        )
        for index, (prompt, user_input) in enumerate(messages)
    ]
    return pa.Table.from_pylist(rows, schema=GENERATE_REQUEST_SCHEMA)


def generation_row(
    request_id: int,
    *,
    task_id: str,
    prompt: str,
    role: Role,
    user_input: str,
    prefill: str,
    n: int,
    temperature: float,
    top_p: float,
    max_tokens: int,
    seed: int,
    stop: Sequence[str] = (),
) -> dict:
    """One GENERATE_REQUEST_SCHEMA row."""
    return {
        "request_id": request_id,
        "task_id": task_id,
        "prompt": prompt,
        "role": role,
        "input": user_input,
        "prefill": prefill,
        "n": n,
        "temperature": temperature,
        "top_p": top_p,
        "max_tokens": max_tokens,
        "seed": seed,
        "stop": list(stop),
    }


def check_columns(table: pa.Table, required: Sequence[str], what: str) -> None:
    missing = [name for name in required if name not in table.column_names]
    if missing:
        raise ValueError(
            f"{what}: column(s) {', '.join(repr(m) for m in missing)} missing; "
            f"the table has {table.column_names}"
        )
    ids = table.column("request_id").to_pylist()
    if len(set(ids)) != len(ids):
        raise ValueError(f"{what}: request_id values are not unique")
