"""Render a request's chat parts into the text one model reads, with that model's template.

Rendering lives on the engine side because the template belongs to the model: a suite may
score with a small model and rewrite with a large one from another family, and each must read
its own format. Requests carry `prompt` (the instruction), `role` and `input`, plus an optional
`prefill` that starts the answer (generation only).

Roles: "system" puts the prompt in its own system message; "user" prepends it to the user
message; "raw" uses no template at all (prompt and input joined as they are), for base models
and tests that need exact text.

A table's rows share a few (prompt, role, prefill) combinations over many inputs, so the
template is rendered once per combination, around a sentinel input: the text before the
sentinel (head) and after it (tail) frame every row's input. That is exact only when the
template copies the content verbatim; a template that strips, escapes or tests the content
is caught by rendering a probe and the combination's first input both ways, and its rows are
rendered one by one as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from pmpo_ray.requests import CHAT_COLUMNS, check_columns

ROLES = ("system", "user", "raw")
# Private-use characters: no template adds them and no prompt is expected to hold them (one
# that does renders its rows one by one: the sentinel must occur exactly once).
SENTINEL = "\ue000pmpo-input\ue001"
# What a template that does not copy content verbatim would change: edge whitespace (trim),
# markup and quotes (escape), braces and backslashes (a second templating pass).
PROBE = " \n\t<b>&amp;'\"{{ x }}{% y %}\\ probe\n "


def render_context(tokenizer, prompt: str, user_input: str, role: str) -> str:
    """The text the model reads before the answer.

    An empty prompt renders without a system message, so the "no instruction" baseline gets
    whatever default the model's template has.
    """
    if role == "raw":
        return prompt + user_input
    messages = chat_messages(prompt, user_input, role)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def chat_messages(prompt: str, user_input: str, role: str) -> list[dict]:
    """The chat a request stands for (roles "system" and "user"), for a template here or a
    server's (engines/openai_engine.py)."""
    if role == "system":
        messages = [{"role": "system", "content": prompt}] if prompt else []
        messages.append({"role": "user", "content": user_input})
        return messages
    if role == "user":
        content = f"{prompt}\n\n{user_input}" if prompt else user_input
        return [{"role": "user", "content": content}]
    raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")


@dataclass(frozen=True)
class RenderedRows:
    """Every row's context as `heads[i] + inputs[i] + tails[i]` (the tail ends with the
    row's prefill). Rows of one (prompt, role, prefill) share the same head and tail strings,
    rendered once; a row rendered on its own (see the module's docstring) has its whole
    context as its head, with an empty input and tail."""

    heads: tuple[str, ...]
    inputs: tuple[str, ...]
    tails: tuple[str, ...]

    def contexts(self) -> list[str]:
        return [h + i + t for h, i, t in zip(self.heads, self.inputs, self.tails)]


def template_frame(tokenizer, prompt: str, role: str, user_input: str) -> tuple[str, str] | None:
    """(head, tail) with render_context(prompt, x, role) == head + x + tail for every input
    x, or None when the template does not pass `user_input` and a probe through verbatim."""
    if role == "raw":
        return prompt, ""
    rendered = render_context(tokenizer, prompt, SENTINEL, role)
    if rendered.count(SENTINEL) != 1:
        return None
    head, _, tail = rendered.partition(SENTINEL)
    for probe in (PROBE, user_input):
        if render_context(tokenizer, prompt, probe, role) != head + probe + tail:
            return None
    return head, tail


class TemplateFrames:
    """An engine's (prompt, role, prefill) -> frame (or None: render row by row), kept across
    its batches: a job's batches and later rounds repeat the same prompts, and rendering a
    frame with its checks costs three template renders (~0.25 ms). Bounded: emptied past
    `limit` entries. An engine prepares one batch at a time, so no lock."""

    def __init__(self, limit: int = 4096):
        self.limit = limit
        self._frames: dict[tuple[str, str, str], tuple[str, str] | None] = {}

    def __contains__(self, key: tuple[str, str, str]) -> bool:
        return key in self._frames

    def get(self, key: tuple[str, str, str]) -> tuple[str, str] | None:
        return self._frames.get(key)

    def __setitem__(self, key: tuple[str, str, str], frame: tuple[str, str] | None) -> None:
        if len(self._frames) >= self.limit:
            self._frames.clear()
        self._frames[key] = frame


def render_table(
    table: pa.Table, tokenizer, what: str, frames: TemplateFrames | None = None
) -> RenderedRows:
    """Every row's context (plus its prefill, where the table has one), the template rendered
    once per (prompt, role, prefill) wherever that is exact; `frames` keeps them across
    tables (None: for this table only)."""
    check_columns(table, ("request_id", *CHAT_COLUMNS), what)
    columns = [table.column(name).to_pylist() for name in CHAT_COLUMNS]
    prefills = (
        table.column("prefill").to_pylist()
        if "prefill" in table.column_names
        else [""] * table.num_rows
    )
    frames = frames if frames is not None else TemplateFrames()
    heads, inputs, tails = [], [], []
    for row, (prompt, role, user_input) in enumerate(zip(*columns)):
        if prompt is None or user_input is None:
            raise ValueError(f"{what}: row {row} has a null prompt or input")
        prefill = prefills[row] or ""
        key = (prompt, role, prefill)
        if key not in frames and user_input:
            frames[key] = template_frame(tokenizer, prompt, role, user_input)
        # An empty input is rendered on its own: a template may test for empty content.
        frame = frames.get(key) if user_input else None
        if frame is None:
            heads.append(render_context(tokenizer, prompt, user_input, role) + prefill)
            inputs.append("")
            tails.append("")
        else:
            heads.append(frame[0])
            inputs.append(user_input)
            tails.append(frame[1] + prefill)
    return RenderedRows(tuple(heads), tuple(inputs), tuple(tails))


def render_rows(table: pa.Table, tokenizer, what: str) -> list[str]:
    """Every row's context (plus its prefill, where the table has one), in row order."""
    return render_table(table, tokenizer, what).contexts()
