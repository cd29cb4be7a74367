"""An ablation study's numbers: per task and averaged over tasks, mean and spread over seeds,
and the issue's targets judged on the full method.

Pure functions over the study's result rows (plain dicts, one per task, variant and seed, as
results.jsonl holds them, plus one row per task for the initial prompt); report.py draws them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import fmean, stdev

from pmpo_ray.tasks.format_specs import known_format_spec

INITIAL = "initial"
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


def runs(rows: Sequence[dict], task: str, variant: str) -> list[dict]:
    return [r for r in rows if r["task"] == task and r["variant"] == variant]


def mean_or_none(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return fmean(present) if present else None


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


def beats(means: dict, initial: dict, better) -> tuple[int, int]:
    """(k, N): on how many of the N tasks the initial prompt was measured on the variant's mean
    is `better` than the initial's; a task the variant has no value for counts against it."""
    wins = sum(1 for task, ref in initial.items() if task in means and better(means[task], ref))
    return wins, len(initial)


def average_table(rows: Sequence[dict], variants: Sequence[str]) -> list[dict]:
    """Per variant (initial first): each metric as a Stat (see across_tasks) with `<key>_tasks`
    saying how many tasks its mean covers (option accuracy: multiple-choice tasks only);
    `ce_below_initial` and `option_at_least_initial` as (k, N) and `option_gain_points` (mean
    over multiple-choice tasks of the gain over the initial prompt, in percentage points), all
    None for the initial prompt itself; mean `forward_passes`; `seeds`."""
    tasks = task_names(rows)
    mc = multiple_choice_tasks(rows)
    covered = {"heldout_ce": tasks, "option_accuracy": mc, "accuracy": tasks}
    initial = {key: task_means(rows, INITIAL, key, covered[key]) for key in METRICS}
    table = []
    for variant in shown_variants(variants):
        chosen = [r for r in rows if r["variant"] == variant]
        entry: dict = {"variant": variant, "seeds": len({r.get("seed") for r in chosen})}
        means = {key: task_means(rows, variant, key, covered[key]) for key in METRICS}
        for key in METRICS:
            entry[key] = across_tasks(rows, variant, key, means[key])
            entry[f"{key}_tasks"] = len(means[key])
        entry["ce_below_initial"] = entry["option_at_least_initial"] = None
        entry["option_gain_points"] = None
        if variant != INITIAL:
            entry["ce_below_initial"] = beats(means["heldout_ce"], initial["heldout_ce"], below)
            option, reference = means["option_accuracy"], initial["option_accuracy"]
            if reference:
                entry["option_at_least_initial"] = beats(option, reference, at_least)
            gains = [100 * (option[t] - reference[t]) for t in option if t in reference]
            entry["option_gain_points"] = fmean(gains) if gains else None
        entry["forward_passes"] = mean_or_none(r.get("forward_passes") for r in chosen)
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


def share(wins: tuple[int, int] | None) -> float:
    return wins[0] / wins[1] if wins and wins[1] else 0.0


def wins_text(wins: tuple[int, int] | None, what: str) -> str:
    if not wins:
        return f"no {what}"
    return f"{wins[0]}/{wins[1]} {what} ({100 * share(wins):.0f}%)"


def targets(rows: Sequence[dict], variants: Sequence[str]) -> list[tuple[str, str, bool]]:
    """The issue's targets, judged on the full method: (target, what was measured, met)."""
    texts = (
        f"{FULL}: held-out CE below the initial prompt's on ≥ {CE_SHARE_TARGET:.0%} of tasks",
        f"{FULL}: option accuracy ≥ the initial prompt's on ≥ {OPTION_SHARE_TARGET:.0%} of "
        f"multiple-choice tasks, mean gain ≥ +{OPTION_GAIN_TARGET:g} points",
        f"{FULL} ≥ each other variant on mean held-out CE (its mean CE is the lowest or tied)",
    )
    table = {e["variant"]: e for e in average_table(rows, variants)}
    full = table.get(FULL)
    if full is None or not any(r["variant"] == FULL for r in rows):
        return [(text, f"variant {FULL!r} was not run", False) for text in texts]
    ce_wins = full["ce_below_initial"]
    first = (wins_text(ce_wins, "tasks"), share(ce_wins) >= CE_SHARE_TARGET - TOLERANCE)
    return [
        (texts[0], *first),
        (texts[1], *option_target(full)),
        (texts[2], *ce_ranking(table, full)),
    ]


def option_target(full: dict) -> tuple[str, bool]:
    wins, gain = full["option_at_least_initial"], full["option_gain_points"]
    if not wins or gain is None:
        return "no multiple-choice tasks measured", False
    met = share(wins) >= OPTION_SHARE_TARGET - TOLERANCE and gain >= OPTION_GAIN_TARGET - TOLERANCE
    return f"{wins_text(wins, 'multiple-choice tasks')}, mean gain {gain:+.1f} points", met


def ce_ranking(table: dict, full: dict) -> tuple[str, bool]:
    if full["heldout_ce"] is None:
        return f"{FULL} has no held-out CE", False
    reference = full["heldout_ce"].mean
    others = [e for name, e in table.items() if name not in (INITIAL, FULL)]
    measured = [e for e in others if e["heldout_ce"] is not None]
    lower = [e for e in measured if below(e["heldout_ce"].mean, reference)]
    listed = ", ".join(f"{e['variant']} {e['heldout_ce'].mean:.3f}" for e in measured)
    text = f"{FULL} {reference:.3f}" + (f"; {listed}" if listed else "; no other variant")
    if lower:
        text += "; lower than full: " + ", ".join(e["variant"] for e in lower)
    return text, bool(measured) and not lower
