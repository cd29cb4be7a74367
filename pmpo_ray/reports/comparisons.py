"""A task's comparisons against the initial prompt, as report tables: each prompt's paired
change with its 95% interval, and (multiple choice) how often each option label is chosen
against how often it is gold, with a flag where a prompt leans on one label (label-prior
collapse: evaluation/label_prior.py)."""

from __future__ import annotations

from pmpo_ray.evaluation.label_prior import COLLAPSE_FACTOR, over_chosen
from pmpo_ray.reports.interval_text import difference_text, is_share
from pmpo_ray.reports.tables import ACCURACIES, DASH, PROMPT_LABELS, Table, metric, percent
from pmpo_ray.run_folder.records import Evaluation

NO_CHOICE = "none (tie at the top)"
CHANGES_NOTE = (
    "Changes from the initial prompt are paired: each held-out example is scored under both "
    "prompts and resampled with its pair (percentile bootstrap, 2,000 resamples). Brackets are "
    "95% intervals; a change whose interval holds 0 is within noise. Accuracy changes are in "
    "percentage points (pts); lower held-out CE is better."
)


def changes_table(evaluation: Evaluation | None) -> Table | None:
    """Per prompt other than the initial one, each figure's change from the initial prompt
    with its paired interval; None where evaluation.json has no such changes."""
    if evaluation is None:
        return None
    others = [p for p in evaluation.prompts if p.name != "initial"]
    fields = [("heldout_ce", "held-out CE"), ("heldout_loss", "held-out loss")] + list(ACCURACIES)
    columns = [
        (field, name)
        for field, name in fields
        if any(difference_text(p, field) and shown(evaluation, p, field) for p in others)
    ]
    if not columns:
        return None
    rows = []
    for score in others:
        cells = [PROMPT_LABELS.get(score.name, score.name)]
        for field, _ in columns:
            text = difference_text(score, field) if shown(evaluation, score, field) else None
            cells.append(text or DASH)
        rows.append(tuple(cells))
    headers = ("change from initial",) + tuple(f"Δ {name}" for _, name in columns)
    return Table(headers, tuple(rows))


def shown(evaluation: Evaluation, score, field: str) -> bool:
    """Losses always; an accuracy where the prompts table shows it (tables.metric)."""
    return not is_share(field) or metric(evaluation, score.name, field) is not None


def chosen_prompts(evaluation: Evaluation | None) -> list:
    if evaluation is None or not evaluation.gold_shares:
        return []
    return [p for p in evaluation.prompts if getattr(p, "choices", None) is not None]


def label_prior_table(evaluation: Evaluation | None) -> Table | None:
    """Per option label: its share of gold answers and of each prompt's choices (the option
    it scored highest); a row for no choice (a tie) where some prompt has one. None where the
    task is not multiple choice (no gold shares or no prompt's choices)."""
    prompts = chosen_prompts(evaluation)
    if not prompts:
        return None
    gold = evaluation.gold_shares
    labels = sorted(set(gold).union(*(p.choices for p in prompts)))
    rows = [
        (label, percent(gold.get(label, 0.0)))
        + tuple(percent(p.choices.get(label, 0.0)) for p in prompts)
        for label in labels
    ]
    missing = [max(0.0, 1.0 - sum(p.choices.values())) for p in prompts]
    if any(share > 1e-9 for share in missing):
        rows.append((NO_CHOICE, DASH) + tuple(percent(share) for share in missing))
    headers = ("option label", "gold") + tuple(f"chosen: {p.name}" for p in prompts)
    return Table(headers, tuple(rows))


def label_prior_flags(evaluation: Evaluation | None) -> list[str]:
    """One line per prompt that chooses some label on more than COLLAPSE_FACTOR times its
    gold share; a single all-clear line where none does; [] for other tasks."""
    prompts = chosen_prompts(evaluation)
    if not prompts:
        return []
    gold = evaluation.gold_shares
    lines = []
    for p in prompts:
        labels = over_chosen(p.choices, gold)
        if labels:
            listed = ", ".join(
                f"{label} on {percent(p.choices[label])} of examples "
                f"(gold {percent(gold.get(label, 0.0))})"
                for label in labels
            )
            lines.append(
                f"Label-prior collapse? The {p.name} prompt chooses {listed}: more than "
                f"{COLLAPSE_FACTOR:g}× the gold share, so part of its option accuracy may come "
                "from favouring a label rather than from reading the question."
            )
    if not lines:
        lines.append(
            f"No prompt chooses any option label on more than {COLLAPSE_FACTOR:g}× its gold "
            "share."
        )
    return lines
