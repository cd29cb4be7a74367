"""Render a request's chat parts into the text one model reads, with that model's template.

Rendering lives on the engine side because the template belongs to the model: a suite may
score with a small model and rewrite with a large one from another family, and each must read
its own format. Requests carry `prompt` (the instruction), `role` and `input`, plus an optional
`prefill` that starts the answer (generation only).

Roles: "system" puts the prompt in its own system message; "user" prepends it to the user
message; "raw" uses no template at all (prompt and input joined as they are), for base models
and tests that need exact text.
"""

from __future__ import annotations

import pyarrow as pa

from pmpo_ray.requests import CHAT_COLUMNS, check_columns

ROLES = ("system", "user", "raw")


def render_context(tokenizer, prompt: str, user_input: str, role: str) -> str:
    """The text the model reads before the answer.

    An empty prompt renders without a system message, so the "no instruction" baseline gets
    whatever default the model's template has.
    """
    if role == "raw":
        return prompt + user_input
    if role == "system":
        messages = [{"role": "system", "content": prompt}] if prompt else []
        messages.append({"role": "user", "content": user_input})
    elif role == "user":
        content = f"{prompt}\n\n{user_input}" if prompt else user_input
        messages = [{"role": "user", "content": content}]
    else:
        raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def render_rows(table: pa.Table, tokenizer, what: str) -> list[str]:
    """Every row's context (plus its prefill, where the table has one), in row order."""
    check_columns(table, ("request_id", *CHAT_COLUMNS), what)
    columns = [table.column(name).to_pylist() for name in CHAT_COLUMNS]
    prefills = (
        table.column("prefill").to_pylist()
        if "prefill" in table.column_names
        else [""] * table.num_rows
    )
    contexts = []
    for row, (prompt, role, user_input) in enumerate(zip(*columns)):
        if prompt is None or user_input is None:
            raise ValueError(f"{what}: row {row} has a null prompt or input")
        contexts.append(render_context(tokenizer, prompt, user_input, role) + (prefills[row] or ""))
    return contexts
