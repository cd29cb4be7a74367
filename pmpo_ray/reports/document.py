"""The report as a list of format-free blocks, in reading order; markdown.py and html.py draw
the same blocks, so the two files can never disagree on content or order."""

from __future__ import annotations

from dataclasses import dataclass

from pmpo_ray.pmpo.records import FORMAT_REASONS
from pmpo_ray.reports import comparisons, tables
from pmpo_ray.reports.prompt_diff import DiffPiece, changed_words, word_diff
from pmpo_ray.run_folder.records import RunFolder, TaskFolder


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str  # `backticks` mark code


@dataclass(frozen=True)
class KeyValues:
    items: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TableBlock:
    table: tables.Table


@dataclass(frozen=True)
class Image:
    src: str  # relative to the report file
    alt: str


@dataclass(frozen=True)
class Diff:
    pieces: tuple[DiffPiece, ...]


@dataclass(frozen=True)
class Code:
    text: str


Block = Heading | Paragraph | KeyValues | TableBlock | Image | Diff | Code


@dataclass(frozen=True)
class Figures:
    """Relative paths of the PNGs written for the report: per task, and the rounds chart."""

    loss_curves: dict[str, str]
    rounds: str | None


def build_document(run: RunFolder, figures: Figures) -> list[Block]:
    kind = "suite" if run.is_suite else "run"
    blocks: list[Block] = [
        Heading(1, f"PMPO report: {run.path.name} ({kind})"),
        Heading(2, "Summary"),
        KeyValues(tuple(tables.summary_items(run))),
        TableBlock(tables.cost_table(run)),
    ]
    if sentence := tables.suite_counterfactual(run):
        blocks.append(Paragraph(sentence))
    blocks += [Heading(2, "Tasks"), TableBlock(tables.tasks_table(run))]
    note = "Costs per task: its optimization plus its held-out evaluation."
    if run.is_suite:
        note += (
            " A suite's tasks share rounds, so their times overlap; the summary's is the suite's."
        )
    blocks.append(Paragraph(note))
    if sentence := option_accuracy_note(run):
        blocks.append(Paragraph(sentence))
    if any(comparisons.changes_table(t.evaluation) for t in run.tasks):
        blocks.append(Paragraph(comparisons.CHANGES_NOTE))
    if run.rounds:
        blocks += rounds_section(run, figures)
    for task in run.tasks:
        blocks += task_section(task, figures.loss_curves[task.task_id])
    return blocks


OPTION_ACCURACY_NOTE = (
    "Option accuracy needs no generation: in the held-out scoring pass the model's choice is "
    "the option it gives the highest log-probability (lm-evaluation-harness's acc); the "
    "length-normalized one divides each option's log-probability by its length in characters "
    "(acc_norm). A tie at the top counts as wrong."
)


def option_accuracy_note(run: RunFolder) -> str | None:
    """What option accuracy means, once, where some task measured it."""
    evaluations = [t.evaluation for t in run.tasks if t.evaluation is not None]
    return OPTION_ACCURACY_NOTE if tables.measured(evaluations, "option_accuracy") else None


def rounds_section(run: RunFolder, figures: Figures) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "Rounds"),
        Paragraph(
            "Each round sends every active task's requests through one generation and one "
            "scoring stage; busy is the share of the round the replicas spent inside an engine."
        ),
        TableBlock(tables.rounds_table(run.rounds)),
    ]
    if figures.rounds:
        blocks.append(Image(figures.rounds, "wall time per round, by stage"))
    return blocks


def task_section(task: TaskFolder, curve: str) -> list[Block]:
    blocks: list[Block] = [Heading(2, f"Task {task.task_id}")]
    facts = [
        ("iterations", f"{task.iterations} (stopped: {task.stop_reason or 'finished'})"),
        (
            "training loss",
            tables.change(tables.number(task.initial_loss), tables.number(task.best_loss)),
        ),
        ("rejected rewrites", rejections_text(task.rejected_rewrites)),
        ("rewrites lost to format", format_loss_text(task.format_loss_share)),
    ]
    if task.evaluation is None:
        facts.append(("held-out evaluation", tables.NOT_EVALUATED))
    else:
        e = task.evaluation
        facts.append(
            ("data", f"{e.n_train} training, {e.n_heldout} held-out examples ({e.format})")
        )
        if e.answer_match:
            facts.append(("answer match", e.answer_match))
    blocks += [KeyValues(tuple(facts)), TableBlock(tables.prompts_table(task))]
    blocks += comparison_blocks(task)
    if sentence := tables.counterfactual_sentence(task.evaluation):
        blocks.append(Paragraph(sentence))
    blocks.append(Image(curve, f"training loss per iteration for {task.task_id}"))
    pieces = word_diff(task.initial_prompt, task.best_prompt)
    removed, added = changed_words(pieces, "removed"), changed_words(pieces, "added")
    blocks += [
        Heading(3, "Prompt diff: initial → optimized"),
        Paragraph(f"{len(removed)} word(s) removed, {len(added)} added."),
        Diff(pieces),
        Heading(3, "Optimized prompt"),
        Code(task.best_prompt),
    ]
    return blocks


def comparison_blocks(task: TaskFolder) -> list[Block]:
    """Each prompt's paired change from the initial one, then (multiple choice) the option
    labels chosen against gold, with the label-prior flag."""
    blocks: list[Block] = []
    if changes := comparisons.changes_table(task.evaluation):
        blocks.append(TableBlock(changes))
    if labels := comparisons.label_prior_table(task.evaluation):
        blocks += [Heading(3, "Option labels chosen vs gold"), TableBlock(labels)]
        blocks += [Paragraph(line) for line in comparisons.label_prior_flags(task.evaluation)]
    return blocks


def format_loss_text(share: float | None) -> str:
    """'12.5% of generated rewrites (no_prompt_tag or empty)', or that none was generated."""
    if share is None:
        return "no rewrite generated"
    return f"{tables.percent(share)} of generated rewrites ({' or '.join(FORMAT_REASONS)})"


def rejections_text(counts: dict[str, int]) -> str:
    """'leaks_example 5, duplicate 2' (reasons: pmpo/rewrite.py's REJECTION_REASONS)."""
    return ", ".join(f"{reason} {count}" for reason, count in counts.items()) or "none"
