"""Draw an ablation study: study.md, study.html and their PNGs under study_files/, in the run
report's style (its blocks, renderers and escaping), plus the average table as terminal text.

Every file is written to a temporary name and renamed into place, so a crash never leaves a
half-written study report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pmpo_ray.reports.document import Block, Code, Heading, Image, KeyValues, Paragraph, TableBlock
from pmpo_ray.reports.html import render_html
from pmpo_ray.reports.markdown import render_markdown
from pmpo_ray.reports.tables import DASH, Table
from pmpo_ray.store import atomic_write_text, check_writable
from pmpo_ray.studies import tables
from pmpo_ray.studies.comparison_cells import (
    INTERVALS_NOTE,
    change_text,
    task_change_cells,
    versus_cells,
    wins_cell,
)
from pmpo_ray.studies.plots import write_figures
from pmpo_ray.studies.tables import INITIAL, Stat

MARKDOWN, HTML, FILES_DIR = "study.md", "study.html", "study_files"
TITLE = "PMPO ablation study"
SPREAD_NOTE = (
    "Averages are the mean over tasks of each task's mean over seeds; option accuracy counts "
    "multiple-choice tasks only. ± is the sample standard deviation over seeds of each seed's "
    "average over the tasks (per task tables: over that task's seeds); the initial prompt is "
    "evaluated once, so it has none. A variant marked (= other) on a task repeated that "
    "variant's run there (nothing differs for that task's format) and is shown and counted as "
    "measured."
)
INITIAL_DESCRIPTION = "the task's initial prompt, not optimized"


def ce_text(value: float) -> str:
    return f"{value:.3f}"


def percent_text(value: float) -> str:
    return f"{100 * value:.1f}%"


def stat_text(stat: Stat | None, show=ce_text, spread=ce_text) -> str:
    if stat is None:
        return DASH
    if stat.n < 2:
        return show(stat.mean)
    return f"{show(stat.mean)} ± {spread(stat.spread)}"


def accuracy_text(stat: Stat | None) -> str:
    return stat_text(stat, percent_text, lambda s: f"{100 * s:.1f}")


def plain(value: float | None, digits: int = 0) -> str:
    return DASH if value is None else f"{value:,.{digits}f}"


def coverage(table: list[dict], key: str, noun: str) -> tuple[str, bool]:
    """A header suffix when every variant's mean covers the same number of tasks; otherwise
    ("", True): each cell then says how many tasks its own mean covers."""
    counts = {e[f"{key}_tasks"] for e in table}
    if len(counts) == 1:
        return f" ({counts.pop()} {noun})", False
    return "", True


def covered(text: str, entry: dict, key: str, per_cell: bool) -> str:
    return f"{text} [{entry[f'{key}_tasks']} tasks]" if per_cell and text != DASH else text


def average_cells(rows: Sequence[dict], variants: Sequence[str]) -> Table:
    """The average table as strings; option columns only where the study has
    multiple-choice tasks."""
    table = tables.average_table(rows, variants)
    with_options = bool(tables.multiple_choice_tasks(rows))
    ce_suffix, ce_cells = coverage(table, "heldout_ce", "tasks")
    gen_suffix, gen_cells = coverage(table, "accuracy", "tasks")
    headers = ["variant", "seeds", f"held-out CE{ce_suffix}"]
    if with_options:
        option_suffix, option_cells = coverage(table, "option_accuracy", "MC tasks")
        headers.append(f"option accuracy{option_suffix}")
    headers.append(f"generation accuracy{gen_suffix}")
    headers.append("Δ CE vs initial")
    headers += ["Δ option acc."] if with_options else []
    headers.append("CE below initial, outside noise")
    headers += ["option acc. above initial, outside noise"] if with_options else []
    headers += ["forward passes", "rewrites lost to format"]
    rows_out = []
    for e in table:
        cells = [e["variant"], str(e["seeds"])]
        cells.append(covered(stat_text(e["heldout_ce"]), e, "heldout_ce", ce_cells))
        if with_options:
            text = accuracy_text(e["option_accuracy"])
            cells.append(covered(text, e, "option_accuracy", option_cells))
        cells.append(covered(accuracy_text(e["accuracy"]), e, "accuracy", gen_cells))
        cells.append(change_text(e["heldout_ce_change"]))
        if with_options:
            cells.append(change_text(e["option_accuracy_change"], share=True))
        cells.append(wins_cell(e["ce_below_initial"]))
        if with_options:
            cells.append(wins_cell(e["option_above_initial"]))
        cells.append(plain(e["forward_passes"]))
        share = e["format_loss_share"]
        cells.append(DASH if share is None else percent_text(share))
        rows_out.append(tuple(cells))
    return Table(tuple(headers), tuple(rows_out))


def aligned(t: Table) -> str:
    """Monospace columns: the first left-aligned, the numbers right-aligned."""
    widths = [max(len(r[i]) for r in (t.headers, *t.rows)) for i in range(len(t.headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(t.headers), rule, *(line(r) for r in t.rows)])


def average_table_text(rows: Sequence[dict], variants: Sequence[str]) -> str:
    """The average table for the terminal (mean ± spread over seeds, changes from the initial
    prompt with their 95% intervals)."""
    text = aligned(average_cells(rows, variants)) + "\n" + SPREAD_NOTE + "\n"
    return text + INTERVALS_NOTE + "\n"


def variant_label(entry: dict) -> str:
    same = entry.get("same_as")
    return f"{entry['variant']} (= {same})" if same else entry["variant"]


def partial_seeds(text: str, stat: Stat | None, seeds: int) -> str:
    """Say so where a metric was measured on fewer seeds than the variant ran."""
    return f"{text} ({stat.n} of {seeds} seeds)" if stat and stat.n < seeds else text


def task_cells(rows: Sequence[dict], task: str, variants: Sequence[str]) -> Table:
    """Per variant: each figure (mean ± spread over seeds), then its change from the
    initial prompt with the paired 95% interval."""
    table = tables.task_table(rows, task, variants)
    with_options = any(e["option_accuracy"] is not None for e in table)
    keys = ["heldout_ce"] + (["option_accuracy"] if with_options else []) + ["accuracy"]
    headers = ["variant", "seeds", "held-out CE", "Δ CE vs initial"]
    headers += ["option accuracy", "Δ option acc."] if with_options else []
    headers += ["generation accuracy", "Δ generation acc.", "forward passes", "iterations"]
    out = []
    for e in table:
        seeds = e["seeds"]
        changes = task_change_cells(rows, task, e["variant"], keys)
        ce = e["heldout_ce"]
        cells = [variant_label(e), str(seeds), partial_seeds(stat_text(ce), ce, seeds), changes[0]]
        if with_options:
            option = e["option_accuracy"]
            cells += [partial_seeds(accuracy_text(option), option, seeds), changes[1]]
        accuracy = e["accuracy"]
        cells += [partial_seeds(accuracy_text(accuracy), accuracy, seeds), changes[-1]]
        cells.append(plain(e["forward_passes"]))
        cells.append(plain(e["iterations"], 1))
        out.append(tuple(cells))
    return Table(tuple(headers), tuple(out))


def setting_text(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(setting_text(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def targets_cells(rows: Sequence[dict], variants: Sequence[str]) -> Table:
    judged = tables.targets(rows, variants)
    body = tuple((text, measured, "met" if met else "missed") for text, measured, met in judged)
    return Table(("target", "measured", "result"), body)


def task_section(rows: Sequence[dict], task: str, variants: Sequence[str]) -> list[Block]:
    formats = sorted({str(r.get("format")) for r in rows if r["task"] == task})
    blocks: list[Block] = [
        Heading(2, f"Task {task}"),
        KeyValues((("format", ", ".join(formats)),)),
        TableBlock(task_cells(rows, task, variants)),
        Heading(3, "Final prompts"),
    ]
    for variant in tables.shown_variants(variants):
        for r in tables.runs(rows, task, variant):
            seed = "" if r.get("seed") is None else f", seed {r['seed']}"
            blocks.append(Heading(4, f"{variant}{seed}"))
            facts = [("training loss", plain(r.get("train_loss"), 4))]
            if r.get("same_as"):
                facts.append(("same run as", str(r["same_as"])))
            if r.get("stop_reason"):
                facts.append(("stopped", str(r["stop_reason"])))
            blocks += [KeyValues(tuple(facts)), Code(str(r.get("prompt") or ""))]
    return blocks


def build_blocks(
    rows: Sequence[dict],
    variants: Sequence[str],
    descriptions: dict[str, str],
    settings: dict,
    figures: dict[str, str],
) -> list[Block]:
    described = tuple(
        (v, descriptions.get(v, INITIAL_DESCRIPTION if v == INITIAL else DASH))
        for v in tables.shown_variants(variants)
    )
    blocks: list[Block] = [
        Heading(1, TITLE),
        Heading(2, "Settings"),
        KeyValues(tuple((str(k), setting_text(v)) for k, v in settings.items())),
        Heading(2, "Variants"),
        KeyValues(described),
        Heading(2, "Average over tasks"),
        TableBlock(average_cells(rows, variants)),
        Paragraph(SPREAD_NOTE),
        Paragraph(INTERVALS_NOTE),
    ]
    if versus := versus_cells(rows, variants):
        blocks += [Heading(3, f"{tables.FULL} against each other variant"), TableBlock(versus)]
    blocks += [Image(src, alt) for alt, src in figures.items()]
    blocks += [
        Heading(2, f"Targets (judged on {tables.FULL})"),
        TableBlock(targets_cells(rows, variants)),
    ]
    for task in tables.task_names(rows):
        blocks += task_section(rows, task, variants)
    return blocks


def write_study_report(
    out: Path,
    rows: Sequence[dict],
    variants: Sequence[str],
    descriptions: dict[str, str],
    settings: dict,
) -> tuple[Path, Path]:
    """Write out/study.md and out/study.html (PNGs under out/study_files/); return both paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    markdown, html = out / MARKDOWN, out / HTML
    check_writable(markdown)
    figures = write_figures(out / FILES_DIR, rows, variants)
    blocks = build_blocks(rows, variants, descriptions, settings, figures)
    atomic_write_text(render_markdown(blocks), markdown)
    atomic_write_text(render_html(blocks, TITLE), html)
    return markdown, html
