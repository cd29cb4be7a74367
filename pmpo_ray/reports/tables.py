"""The report's numbers as plain tables of strings: what each row and column says, once.

Cells are unescaped text; the Markdown and HTML renderers escape them for their format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from statistics import mean

from pmpo_ray.reports.interval_text import difference_text, figure, is_share, score_interval
from pmpo_ray.run_folder.records import Evaluation, RunFolder, TaskFolder, WorkTotals, round_seconds
from pmpo_ray.tasks.format_specs import known_format_spec

DASH = "—"
NOT_EVALUATED = "not evaluated yet: run `pmpo evaluate RUN_DIR`"
PROMPT_LABELS = {
    "initial": "initial",
    "optimized": "optimized",
    "no_instruction": "baseline: no instruction",
    "step_by_step": 'baseline: "Let\'s think step by step"',
}
COST_HEADERS = ("forward passes", "tokens scored", "tokens generated", "time (s)")


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def number(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:.{digits}f}"


def percent(value: float | None) -> str:
    return DASH if value is None else f"{100 * value:.1f}%"


def count(value: int) -> str:
    return f"{value:,}"


def change(before: str, after: str) -> str:
    return f"{before} → {after}"


def work_cells(cost: WorkTotals) -> tuple[str, ...]:
    return (
        count(cost.forward_passes),
        count(cost.tokens_scored),
        count(cost.tokens_generated),
        f"{cost.seconds:.1f}",
    )


def add_work(costs) -> WorkTotals:
    costs = list(costs)
    return WorkTotals(
        sum(c.forward_passes for c in costs),
        sum(c.tokens_scored for c in costs),
        sum(c.tokens_generated for c in costs),
        sum(c.seconds for c in costs),
    )


# PromptScore field -> header. Accuracy grades greedy answers; the others are read from the
# scoring pass's log-probabilities: the option the model scores highest (multiple choice, as
# lm-eval's acc / acc_norm) and the share of rejected answers ranked below the chosen one.
ACCURACIES = (
    ("accuracy", "accuracy"),
    ("option_accuracy", "option accuracy"),
    ("option_accuracy_norm", "length-normalized option accuracy"),
    ("pairwise_accuracy", "pairwise accuracy"),
)


def metric(evaluation: Evaluation, name: str, field: str = "accuracy") -> float | None:
    """One prompt's accuracy of one kind (an ACCURACIES field), None where not measured.
    Pairwise accuracy is shown only for formats it is the measure of (preference): a
    multiple-choice task's evaluation.json has it too, but option accuracy says more plainly
    how it chooses."""
    score = evaluation.prompt(name)
    spec = known_format_spec(evaluation.format)
    pairwise_shown = spec is not None and spec.answer_check == "pairwise"
    if score is None or (field == "pairwise_accuracy" and not pairwise_shown):
        return None
    return getattr(score, field)


def measured(evaluations, field: str) -> bool:
    """Whether any prompt of these evaluations has this accuracy: its column shows."""
    return any(metric(e, p.name, field) is not None for e in evaluations for p in e.prompts)


def accuracy_change(evaluation: Evaluation, field: str) -> str:
    before, after = (metric(evaluation, n, field) for n in ("initial", "optimized"))
    if before is None and after is None:
        return DASH
    text = change(percent(before), percent(after))
    return with_difference(text, evaluation, field) if after is not None else text


def ce_change(evaluation: Evaluation) -> str:
    text = change(*(number(evaluation.prompt(n).heldout_ce) for n in ("initial", "optimized")))
    return with_difference(text, evaluation, "heldout_ce")


def with_difference(text: str, evaluation: Evaluation, field: str) -> str:
    """`before → after (change [95% interval])`, the optimized prompt's paired change from
    the initial one where evaluation.json has it (`within noise` where it holds 0)."""
    found = difference_text(evaluation.prompt("optimized"), field)
    return f"{text} ({found})" if found else text


def shown_figure(score, field: str, value: float | None) -> str:
    """A prompt's figure with its 95% interval where evaluation.json has one; plain else."""
    plain = percent(value) if is_share(field) else number(value)
    return figure(value, score_interval(score, field), is_share(field)) or plain


def evaluation_cost(evaluation: Evaluation) -> WorkTotals:
    """Every prompt's scoring and generation; time is the evaluation's own wall time."""
    total = add_work(p.work for p in evaluation.prompts)
    return WorkTotals(
        total.forward_passes, total.tokens_scored, total.tokens_generated, evaluation.seconds
    )


def optimization_cost(run: RunFolder) -> WorkTotals:
    """Summed over tasks, except time: a suite's tasks share rounds, so their clocks overlap."""
    total = add_work(t.training_work for t in run.tasks)
    if run.rounds:
        seconds = sum(round_seconds(r) for r in run.rounds)
    else:
        seconds = max(t.training_work.seconds for t in run.tasks)
    return WorkTotals(total.forward_passes, total.tokens_scored, total.tokens_generated, seconds)


def cost_table(run: RunFolder) -> Table:
    optimization = optimization_cost(run)
    evaluated = [t.evaluation for t in run.tasks if t.evaluation is not None]
    rows = [("optimization (training)",) + work_cells(optimization)]
    if evaluated:
        evaluation = add_work(evaluation_cost(e) for e in evaluated)
        rows.append((f"held-out evaluation ({len(evaluated)} task(s))",) + work_cells(evaluation))
        rows.append(("total",) + work_cells(add_work([optimization, evaluation])))
    return Table(("stage",) + COST_HEADERS, tuple(rows))


def summary_items(run: RunFolder) -> list[tuple[str, str]]:
    tasks = run.tasks
    evaluated = [t for t in tasks if t.evaluation is not None]
    items = [("tasks", f"{len(tasks)} ({', '.join(t.task_id for t in tasks)})")]
    if not evaluated:
        return items + [("held-out evaluation", NOT_EVALUATED)]
    if len(evaluated) < len(tasks):
        missing = ", ".join(t.task_id for t in tasks if t.evaluation is None)
        items.append(("held-out evaluation", f"{missing}: {NOT_EVALUATED}"))
    items.append(
        ("mean held-out CE", mean_change(evaluated, lambda e, n: e.prompt(n).heldout_ce, number))
    )
    for field, name in ACCURACIES:
        chosen = [
            t
            for t in evaluated
            if None not in (metric(t.evaluation, n, field) for n in ("initial", "optimized"))
        ]
        if chosen:
            label = f"mean held-out {name} ({len(chosen)} task(s))"
            items.append((label, mean_change(chosen, partial(metric, field=field), percent)))
    return items


def mean_change(tasks: list[TaskFolder], value, show) -> str:
    before = [value(t.evaluation, "initial") for t in tasks]
    after = [value(t.evaluation, "optimized") for t in tasks]
    if any(v is None for v in before + after):
        return DASH
    return change(show(mean(before)), show(mean(after)))


def tasks_table(run: RunFolder) -> Table:
    """Per task, initial → optimized. Accuracy always has a column; the likelihood-based
    accuracies only where some task measured them."""
    evaluated = [t.evaluation for t in run.tasks if t.evaluation is not None]
    extra = [(f, name) for f, name in ACCURACIES[1:] if measured(evaluated, f)]
    headers = ("task", "format", "iterations", "lost to format", "training loss", "held-out CE")
    headers += ("accuracy",)
    headers += tuple(name for _, name in extra)
    rows = []
    for task in run.tasks:
        evaluation = task.evaluation
        training = change(number(task.initial_loss), number(task.best_loss))
        if evaluation is None:
            held_out, fmt = DASH, DASH
            accuracies = ("not evaluated yet",) + (DASH,) * len(extra)
        else:
            held_out = ce_change(evaluation)
            fields = ["accuracy", *(f for f, _ in extra)]
            accuracies = tuple(accuracy_change(evaluation, f) for f in fields)
            fmt = evaluation.format
        cost = task.training_work
        if evaluation is not None:
            cost = add_work([cost, evaluation_cost(evaluation)])
        rows.append(
            (task.task_id, fmt, str(task.iterations), percent(task.format_loss_share))
            + (training, held_out)
            + accuracies
            + work_cells(cost)
        )
    return Table(headers + COST_HEADERS, tuple(rows))


def prompts_table(task: TaskFolder) -> Table:
    """Initial vs optimized (and the baselines), then what the optimization itself cost."""
    evaluation = task.evaluation
    training = {"initial": task.initial_loss, "optimized": task.best_loss}
    optimization_row = (f"optimization ({task.iterations} iterations)",)
    if evaluation is None:
        headers = ("prompt", "training loss", "held-out CE", "accuracy")
        rows = [(PROMPT_LABELS[n], number(training[n]), DASH, DASH) + (DASH,) * 4 for n in training]
        rows.append(optimization_row + (DASH,) * 3 + work_cells(task.training_work))
        return Table(headers + COST_HEADERS, tuple(rows))
    # The held-out loss is the objective's; shown where the format's is the preference loss.
    spec = known_format_spec(evaluation.format)
    preference = spec is not None and spec.default_objective == "preference"
    shown = [(f, name) for f, name in ACCURACIES if measured([evaluation], f)]
    headers = ("prompt", "training loss", "held-out CE")
    headers += ("held-out preference loss",) if preference else ()
    headers += tuple(name for _, name in shown)
    rows = []
    for score in evaluation.prompts:
        cells = (PROMPT_LABELS.get(score.name, score.name), number(training.get(score.name)))
        cells += (shown_figure(score, "heldout_ce", score.heldout_ce),)
        cells += (shown_figure(score, "heldout_loss", score.heldout_loss),) if preference else ()
        cells += tuple(shown_figure(score, f, metric(evaluation, score.name, f)) for f, _ in shown)
        rows.append(cells + work_cells(score.work))
    blank = (DASH,) * (len(headers) - 1)
    rows.append(optimization_row + blank + work_cells(task.training_work))
    return Table(headers + COST_HEADERS, tuple(rows))


ROUND_COLUMNS = (  # rounds.jsonl key -> header; a column shows only when some round has it
    ("round", "round"),
    ("active_tasks", "active tasks"),
    ("generation_requests", "generation requests"),
    ("generation_tokens", "tokens generated"),
    ("generation_seconds", "generation (s)"),
    ("scoring_requests", "scoring requests"),
    ("scoring_tokens", "tokens scored"),
    ("scoring_seconds", "scoring (s)"),
    ("wall_seconds", "round wall (s)"),
    ("checkpoint_bytes", "checkpoint bytes"),
    ("rewriter_busy_fraction", "rewriter busy"),
    ("scorer_busy_fraction", "scorer busy"),
)


def rounds_table(rounds: tuple[dict, ...]) -> Table:
    columns = [(key, header) for key, header in ROUND_COLUMNS if any(key in r for r in rounds)]
    rows = tuple(tuple(round_cell(key, r.get(key)) for key, _ in columns) for r in rounds)
    return Table(tuple(header for _, header in columns), rows)


def round_cell(key: str, value) -> str:
    if value is None:
        return DASH
    if key.endswith("_fraction"):
        return percent(value)
    if key.endswith("_seconds"):
        return f"{value:.2f}"
    return count(value) if isinstance(value, int) else str(value)


def counterfactual_sentence(evaluation: Evaluation | None) -> str | None:
    plan = evaluation.counterfactual if evaluation else None
    if plan is None:
        return None
    saved = (
        plan.generated_tokens / plan.loss_based_tokens_generated
        if plan.loss_based_tokens_generated
        else None
    )
    ratio = f" ({saved:.1f}× fewer)" if saved and saved > 1 else ""
    measured = f", measured on the held-out {plan.length_from}" if plan.length_from else ""
    return (
        f"A generation-based evaluation of the same {count(plan.candidates_scored)} candidates on "
        f"{count(plan.train_examples)} training examples would have generated "
        f"{count(plan.generated_tokens)} tokens (about {plan.mean_answer_tokens:.1f} per answer"
        f"{measured}); "
        f"loss-based selection generated {count(plan.loss_based_tokens_generated)}{ratio}."
    )


def suite_counterfactual(run: RunFolder) -> str | None:
    plans = [
        t.evaluation.counterfactual
        for t in run.tasks
        if t.evaluation and t.evaluation.counterfactual
    ]
    if len(plans) < 2:
        return None
    generated = sum(p.generated_tokens for p in plans)
    loss_based = sum(p.loss_based_tokens_generated for p in plans)
    return (
        f"Over {len(plans)} tasks, a generation-based evaluation of the same candidates would have "
        f"generated {count(generated)} tokens; loss-based selection generated {count(loss_based)}."
    )
