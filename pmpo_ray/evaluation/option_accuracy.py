"""Option accuracy: which answer option the model itself prefers, read from scored rows.

A multiple-choice example is scored as its gold option (weight > 0) and every distractor
(weight < 0), each as a continuation of the same context. As lm-evaluation-harness does, the
model "chooses" the option it gives the highest log-probability: `acc` compares total
log-probabilities; `acc_norm` divides each by the option's length in characters first (lm-eval
normalizes by the choice string's length too), so a longer option is not penalized just for
having more tokens to pay for. Characters, not tokens: the count does not depend on the
model's tokenizer, so two scorers are compared on the same footing.

A tie at the top counts as wrong: the model did not single out the gold option (lm-eval's
argmax would pick whichever tied option is listed first, which rewards the data's ordering).

Plain functions over row dicts (`example_id`, `weight`, `logprob_sum`, `continuation`), as the
held-out scoring table holds them, so this is testable without an engine. No extra forward
pass: the held-out scoring already scores the distractors (`with_rejected`).
"""

from __future__ import annotations

from typing import Sequence


def option_score(row: dict, *, per_char: bool) -> float:
    """The number the model's choice maximizes: log-probability, or per character."""
    if per_char:
        return row["logprob_sum"] / max(1, len(row["continuation"]))
    return row["logprob_sum"]


def chosen_row(rows: Sequence[dict], *, per_char: bool = False) -> dict | None:
    """The one option row scored strictly highest; None when two or more tie at the top."""
    scores = [option_score(row, per_char=per_char) for row in rows]
    best = max(scores)
    if scores.count(best) > 1:
        return None
    return rows[scores.index(best)]


def rows_by_example(rows: Sequence[dict]) -> dict[str, list[dict]]:
    """One candidate's rows grouped by example, keeping only examples that have options
    (a reference and at least one distractor)."""
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["example_id"], []).append(row)
    return {
        example_id: options
        for example_id, options in grouped.items()
        if any(row["weight"] < 0 for row in options)
    }


def option_choices(rows: Sequence[dict], *, per_char: bool = False) -> dict[str, str | None]:
    """example id -> the option (its continuation text) the model chooses; None on a tie."""
    choices = {}
    for example_id, options in rows_by_example(rows).items():
        chosen = chosen_row(options, per_char=per_char)
        choices[example_id] = None if chosen is None else chosen["continuation"]
    return choices


def option_accuracy(rows: Sequence[dict], *, per_char: bool = False) -> float | None:
    """Share of examples whose chosen option is the reference (weight > 0); None when no
    example has options. `rows` are one candidate's."""
    examples = rows_by_example(rows)
    if not examples:
        return None
    right = 0
    for options in examples.values():
        chosen = chosen_row(options, per_char=per_char)
        right += chosen is not None and chosen["weight"] > 0
    return right / len(examples)
