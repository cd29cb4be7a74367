"""Arrow schemas of scoring and generation requests, and the builders that fill them.

A scoring request is one teacher-forced pass: the model reads `context` and we read the
log-probability it gives `continuation`. The row keeps which prompt (`candidate_id`) and which
example (`example_id`) it came from, so a backend can group rows that share a prompt prefix and
the optimizer can aggregate per candidate without parsing text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import pyarrow as pa

SCORE_REQUEST_SCHEMA = pa.schema(
    [
        ("request_id", pa.int64()),
        ("task_id", pa.string()),
        ("candidate_id", pa.string()),
        ("example_id", pa.string()),
        ("kind", pa.string()),  # candidate | ablation | holdout | adhoc
        ("context", pa.string()),
        ("continuation", pa.string()),
        ("weight", pa.float64()),  # sign/weight for preference pairs; 1.0 otherwise
    ]
)

SCORE_RESULT_FIELDS = [
    pa.field("logprob_sum", pa.float64()),
    pa.field("n_tokens", pa.int64()),
    pa.field("is_greedy", pa.bool_()),
    pa.field("n_input_tokens", pa.int64()),  # context + continuation: what the pass cost
]
TOKEN_LOGPROBS_FIELD = pa.field("token_logprobs", pa.list_(pa.float32()))

GENERATE_REQUEST_SCHEMA = pa.schema(
    [
        ("request_id", pa.int64()),
        ("task_id", pa.string()),
        ("context", pa.string()),
        ("n", pa.int32()),
        ("temperature", pa.float32()),
        ("top_p", pa.float32()),
        ("max_tokens", pa.int32()),
        ("seed", pa.int64()),
    ]
)

GENERATE_RESULT_SCHEMA = pa.schema(
    [
        ("request_id", pa.int64()),
        ("sample_index", pa.int32()),
        ("text", pa.string()),
        ("n_tokens", pa.int64()),
        ("finish_reason", pa.string()),
    ]
)

REQUIRED_SCORE_COLUMNS = ("request_id", "context", "continuation")
REQUIRED_GENERATE_COLUMNS = ("request_id", "context")


@dataclass(frozen=True)
class Example:
    """One labelled example: `target` is the reference (or chosen) answer; `rejected` holds
    distractor options or rejected answers, scored only by the preference objective.
    `answer` is what held-out accuracy compares a generated answer with (GSM8K: the final
    number, while `target` is the whole worked solution); empty means `target`."""

    example_id: str
    input: str
    target: str
    rejected: tuple[str, ...] = ()
    answer: str = ""

    @property
    def gold_answer(self) -> str:
        return self.answer or self.target


def render_context(tokenizer, prompt: str, user_input: str, role: Literal["system", "user"]) -> str:
    """The chat-template text the model reads before the assistant's answer.

    An empty prompt renders without a system message, so the "no instruction" baseline gets
    whatever default the model's template has.
    """
    if role == "system":
        messages = [{"role": "system", "content": prompt}] if prompt else []
        messages.append({"role": "user", "content": user_input})
    else:
        content = f"{prompt}\n\n{user_input}" if prompt else user_input
        messages = [{"role": "user", "content": content}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def score_requests(
    tokenizer,
    prompts: Sequence[tuple[str, str]],
    examples: Sequence[Example],
    *,
    task_id: str,
    kind: str,
    role: Literal["system", "user"],
    first_request_id: int = 0,
    with_rejected: bool = False,
) -> pa.Table:
    """The cross product prompts x examples; `prompts` holds (candidate_id, text) pairs.

    Each example gives a row for its target (weight +1) and, with `with_rejected`, one row per
    rejected answer (weight -1) sharing the same context.
    """
    rows = []
    for candidate_id, prompt in prompts:
        for example in examples:
            context = render_context(tokenizer, prompt, example.input, role)
            answers = [(example.target, 1.0)]
            if with_rejected:
                answers += [(rejected, -1.0) for rejected in example.rejected]
            for continuation, weight in answers:
                rows.append(
                    {
                        "request_id": first_request_id + len(rows),
                        "task_id": task_id,
                        "candidate_id": candidate_id,
                        "example_id": example.example_id,
                        "kind": kind,
                        "context": context,
                        "continuation": continuation,
                        "weight": weight,
                    }
                )
    return pa.Table.from_pylist(rows, schema=SCORE_REQUEST_SCHEMA)


def generate_requests(
    contexts: Iterable[str],
    *,
    task_id: str,
    n: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_tokens: int = 256,
    seed: int = 0,
) -> pa.Table:
    """One row per context; request i is seeded with seed + i so reruns sample the same."""
    rows = [
        {
            "request_id": index,
            "task_id": task_id,
            "context": context,
            "n": n,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
            "seed": seed + index,
        }
        for index, context in enumerate(contexts)
    ]
    return pa.Table.from_pylist(rows, schema=GENERATE_REQUEST_SCHEMA)


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
