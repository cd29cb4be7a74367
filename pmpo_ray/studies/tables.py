"""An ablation study's numbers: per task and averaged over tasks, mean and spread over seeds,
and the issue's targets judged on the full method.

Pure functions over the study's result rows (plain dicts, one per task, variant and seed, as
results.jsonl holds them, plus one row per task for the initial prompt); report.py draws them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from statistics import fmean, stdev

from pmpo_ray.studies.intervals import INITIAL, average_change, mean_or_none, noise_wins, runs
from pmpo_ray.tasks.format_specs import known_format_spec

FULL = "full"
METRICS = ("heldout_ce", "option_accuracy", "accuracy")
# Seed means of accuracies are sums of fractions: (0.6 + 0.7) / 2 must count as equal to 0.65.
TOLERANCE = 1e-9
CE_SHARE_TARGET = 0.90
OPTION_SHARE_TARGET = 0.75
OPTION_GAIN_TARGET = 3.0  # points


@dataclass(frozen=True)
class Stat:
    mean: float
    spread: float  # sample standard deviation over seeds; 0 for a single seed
    n: int


def cell(values: Iterable[float | None]) -> Stat | None:
    """Mean and sample standard deviation of the values that were measured (None skipped)."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return None
    return Stat(fmean(present), stdev(present) if len(present) > 1 else 0.0, len(present))


def shown_variants(variants: Sequence[str]) -> list[str]:
    """The variants in their given order, the initial prompt first whether listed or not."""
    return [INITIAL] + [v for v in variants if v != INITIAL]


def task_names(rows: Sequence[dict]) -> list[str]:
    return list(dict.fromkeys(r["task"] for r in rows))


def multiple_choice_tasks(rows: Sequence[dict]) -> list[str]:
    """The tasks whose format has options, so option accuracy."""
    return list(dict.fromkeys(r["task"] for r in rows if _has_options(r)))


def _has_options(row: dict) -> bool:
    spec = known_format_spec(row.get("format"))  # read back from the study's results
    return spec is not None and spec.has_options


def repeated_run(chosen: Sequence[dict]) -> str | None:
    """The variant whose runs these repeat, when every one of them says the same."""
    names = {r.get("same_as") for r in chosen}
    return names.pop() if len(names) == 1 else None


def task_table(rows: Sequence[dict], task: str, variants: Sequence[str]) -> list[dict]:
    """One row per variant (initial first): each metric as a Stat over seeds (None where never
    measured), mean forward passes and iterations, the number of seeds, and `same_as`.
    A variant that has no run on this task keeps its row with seeds 0, so a gap shows."""
    table = []
    for variant in shown_variants(variants):
        chosen = runs(rows, task, variant)
        entry: dict = {"variant": variant, "seeds": len(chosen)}
        for key in METRICS:
            entry[key] = cell(r.get(key) for r in chosen)
        entry["forward_passes"] = mean_or_none(r.get("forward_passes") for r in chosen)
        entry["iterations"] = mean_or_none(r.get("iterations") for r in chosen)
        entry["same_as"] = repeated_run(chosen)
        table.append(entry)
    return table


def task_means(rows: Sequence[dict], variant: str, key: str, tasks: Sequence[str]) -> dict:
    """task -> the variant's mean over seeds of `key`, for the tasks where it was measured."""
    means = {}
    for task in tasks:
        value = mean_or_none(r.get(key) for r in runs(rows, task, variant))
        if value is not None:
            means[task] = value
    return means


def across_tasks(rows: Sequence[dict], variant: str, key: str, means: dict) -> Stat | None:
    """The mean over tasks of the per-task seed means; the spread is the standard deviation
    over seeds of each seed's own average over those tasks (the tasks it has a value for)."""
    if not means:
        return None
    per_seed: dict = {}
    for r in rows:
        if r["variant"] == variant and r["task"] in means and r.get(key) is not None:
            per_seed.setdefault(r.get("seed"), []).append(float(r[key]))
    averages = [fmean(values) for values in per_seed.values()]
    spread = stdev(averages) if len(averages) > 1 else 0.0
    return Stat(fmean(means.values()), spread, len(averages))


def below(value: float, reference: float) -> bool:
    return value < reference - TOLERANCE


def at_least(value: float, reference: float) -> bool:
    return value >= reference - TOLERANCE


def average_table(rows: Sequence[dict], variants: Sequence[str]) -> list[dict]:
    """Per variant (initial first): each metric as a Stat (see across_tasks) with `<key>_tasks`
    saying how many tasks its mean covers (option accuracy: multiple-choice tasks only);
    against the initial prompt (None for the initial prompt itself): `<key>_change`, the mean
    over tasks of the change as an intervals.Change (a stratified paired 95% interval where
    the rows have per-example values), and `ce_below_initial` / `option_above_initial` as
    (k, N, judged): on k of N tasks better outside the noise (intervals.noise_wins; judged
    False: some task had only means, compared as such); mean `forward_passes` and
    `format_loss_share` (the share of generated rewrites lost to format, per run); `seeds`."""
    tasks = task_names(rows)
    mc = multiple_choice_tasks(rows)
    covered = {"heldout_ce": tasks, "option_accuracy": mc, "accuracy": tasks}
    initial = {key: task_means(rows, INITIAL, key, covered[key]) for key in METRICS}
    lower, higher = partial(below, reference=0.0), partial(at_least, reference=0.0)
    table = []
    for variant in shown_variants(variants):
        chosen = [r for r in rows if r["variant"] == variant]
        entry: dict = {"variant": variant, "seeds": len({r.get("seed") for r in chosen})}
        means = {key: task_means(rows, variant, key, covered[key]) for key in METRICS}
        for key in METRICS:
            entry[key] = across_tasks(rows, variant, key, means[key])
            entry[f"{key}_tasks"] = len(means[key])
            entry[f"{key}_change"] = average_change(rows, variant, key, covered[key])
        entry["ce_below_initial"] = entry["option_above_initial"] = None
        if variant != INITIAL:
            entry["ce_below_initial"] = noise_wins(rows, variant, "heldout_ce", tasks, True, lower)
            if initial["option_accuracy"]:
                found = noise_wins(rows, variant, "option_accuracy", mc, False, higher)
                entry["option_above_initial"] = found
        entry["forward_passes"] = mean_or_none(r.get("forward_passes") for r in chosen)
        entry["format_loss_share"] = mean_or_none(r.get("format_loss_share") for r in chosen)
        table.append(entry)
    return table


def changes(rows: Sequence[dict], variants: Sequence[str], key: str, scale: float = 1.0) -> dict:
    """variant -> per task (in task order, where both were measured) the variant's seed mean of
    `key` minus the initial prompt's, times `scale`; every variant but the initial prompt."""
    tasks = task_names(rows)
    if key == "option_accuracy":
        tasks = multiple_choice_tasks(rows)
    initial = task_means(rows, INITIAL, key, tasks)
    result = {}
    for variant in shown_variants(variants)[1:]:
        means = task_means(rows, variant, key, tasks)
        shared = [t for t in tasks if t in means and t in initial]
        result[variant] = [scale * (means[t] - initial[t]) for t in shared]
    return result


def share(wins: tuple | None) -> float:
    return wins[0] / wins[1] if wins and wins[1] else 0.0


def wins_text(wins: tuple | None, what: str, how: str) -> str:
    """`2/3 tasks (67%) below outside the noise`; a count judged on means alone says so."""
    if not wins:
        return f"no {what}"
    judged = wins[2] if len(wins) > 2 else True
    how = f"{how} outside the noise" if judged else f"{how} on means (no per-example values)"
    return f"{wins[0]}/{wins[1]} {what} ({100 * share(wins):.0f}%) {how}"


def targets(rows: Sequence[dict], variants: Sequence[str]) -> list[tuple[str, str, bool]]:
    """The issue's targets, judged on the full method: (target, what was measured, met). A win
    counts only outside the noise: the 95% paired interval of the change excludes 0 on the
    good side (rows without per-example values fall back to their means, and say so)."""
    texts = (
        f"{FULL}: held-out CE below the initial prompt's, outside the noise, on "
        f"≥ {CE_SHARE_TARGET:.0%} of tasks",
        f"{FULL}: option accuracy above the initial prompt's, outside the noise, on "
        f"≥ {OPTION_SHARE_TARGET:.0%} of multiple-choice tasks; mean gain ≥ "
        f"+{OPTION_GAIN_TARGET:g} points, its interval above 0",
        f"{FULL} ≥ each other variant on mean held-out CE: no other variant lower outside "
        "the noise (paired over examples, stratified by task)",
    )
    table = {e["variant"]: e for e in average_table(rows, variants)}
    full = table.get(FULL)
    if full is None or not any(r["variant"] == FULL for r in rows):
        return [(text, f"variant {FULL!r} was not run", False) for text in texts]
    ce_wins = full["ce_below_initial"]
    first = (wins_text(ce_wins, "tasks", "below"), share(ce_wins) >= CE_SHARE_TARGET - TOLERANCE)
    return [
        (texts[0], *first),
        (texts[1], *option_target(full)),
        (texts[2], *ce_ranking(rows, table, full)),
    ]


def option_target(full: dict) -> tuple[str, bool]:
    wins, gain = full["option_above_initial"], full["option_accuracy_change"]
    if not wins or gain is None:
        return "no multiple-choice tasks measured", False
    points = 100 * gain.change
    text = f"{wins_text(wins, 'multiple-choice tasks', 'above')}, mean gain {points:+.1f} points"
    if gain.ci95 is not None:
        text += f" [{100 * gain.ci95[0]:+.1f}, {100 * gain.ci95[1]:+.1f}]"
    outside = gain.ci95 is None or gain.ci95[0] > 0
    met = share(wins) >= OPTION_SHARE_TARGET - TOLERANCE and outside
    return text, met and points >= OPTION_GAIN_TARGET - TOLERANCE


def ce_ranking(rows: Sequence[dict], table: dict, full: dict) -> tuple[str, bool]:
    """Full against each other variant on the tasks both ran: full minus the other's held-out
    CE, stratified paired interval; the other is lower where that lies wholly above 0."""
    if full["heldout_ce"] is None:
        return f"{FULL} has no held-out CE", False
    tasks = task_names(rows)
    others = [name for name, e in table.items() if name not in (INITIAL, FULL)]
    compared = {o: average_change(rows, FULL, "heldout_ce", tasks, reference=o) for o in others}
    compared = {o: c for o, c in compared.items() if c is not None}
    judged = all(c.ci95 is not None for c in compared.values())
    lower = [o for o, c in compared.items() if (c.ci95 or (c.change,))[0] > TOLERANCE]
    listed = ", ".join(f"{o} {table[o]['heldout_ce'].mean:.3f}" for o in compared)
    text = f"{FULL} {full['heldout_ce'].mean:.3f}" + (
        f"; {listed}" if listed else "; no other variant"
    )
    if lower:
        how = "lower than full outside the noise" if judged else "lower than full"
        text += f"; {how}: " + ", ".join(lower)
    elif compared:
        text += "; none lower outside the noise" if judged else "; none lower (means only)"
    return text, bool(compared) and not lower
