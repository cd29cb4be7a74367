"""Read a run folder (one task, or a suite of tasks) into plain, frozen records.

Everything the report shows comes from here, so the renderers never touch files and a broken
run folder fails in one place with the file and field named. The evaluation is optional: a run
that was only optimized still reads, with `evaluation=None` on each task.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from pmpo_ray.evaluation.run_folder import task_dirs

BASELINE_ORDER = ("initial", "optimized", "no_instruction", "step_by_step")


@dataclass(frozen=True)
class Point:
    """One scored candidate: `iteration` 0 is the initial prompt."""

    iteration: int
    loss: float
    role: str  # initial | parent | variant


@dataclass(frozen=True)
class Cost:
    forward_passes: int
    tokens_scored: int
    tokens_generated: int
    seconds: float


@dataclass(frozen=True)
class PromptScore:
    name: str
    text: str
    heldout_ce: float
    heldout_loss: float
    accuracy: float | None
    pairwise_accuracy: float | None
    cost: Cost


@dataclass(frozen=True)
class Counterfactual:
    candidates_scored: int
    train_examples: int
    mean_answer_tokens: float
    generated_tokens: int
    loss_based_tokens_generated: int
    length_from: str  # what the answer length was measured on ("answers", "references", "")


@dataclass(frozen=True)
class Evaluation:
    format: str
    answer_match: str
    n_train: int
    n_heldout: int
    prompts: tuple[PromptScore, ...]  # initial, optimized, then baselines
    counterfactual: Counterfactual | None
    seconds: float

    def prompt(self, name: str) -> PromptScore | None:
        return next((p for p in self.prompts if p.name == name), None)


@dataclass(frozen=True)
class TaskData:
    task_id: str
    folder: Path
    initial_prompt: str
    best_prompt: str
    initial_loss: float
    best_loss: float
    iterations: int
    stop_reason: str
    training_cost: Cost
    points: tuple[Point, ...]
    evaluation: Evaluation | None


@dataclass(frozen=True)
class RunData:
    run_dir: Path
    is_suite: bool
    tasks: tuple[TaskData, ...]
    rounds: tuple[dict, ...]  # rounds.jsonl lines, in order; empty for a single-task run


def load_run(run_dir: Path) -> RunData:
    run_dir = Path(run_dir)
    kind, folders = task_dirs(run_dir)
    if kind == "task":
        return RunData(run_dir, False, (load_task(run_dir),), ())
    rounds = read_rounds(run_dir / "rounds.jsonl")
    return RunData(run_dir, True, tuple(load_task(f) for f in folders), rounds)


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: missing") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def checked(data: dict, name: str, where: Path | str, kind=(int, float)):
    """data[name], checked: a missing or mistyped field names the file and the field."""
    if name not in data:
        raise ValueError(f"{where}: field {name!r} missing")
    value = data[name]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"{where}: field {name!r} has {value!r}, not {_kind_name(kind)}")
    return value


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def load_task(folder: Path) -> TaskData:
    result_path = folder / "result.json"
    result = read_json(result_path)
    budget = checked(result, "budget", result_path, dict)
    points, initial_prompt = read_history(folder / "history.parquet")
    best_path = folder / "best_prompt.json"
    evaluation_path = folder / "evaluation.json"
    return TaskData(
        task_id=checked(result, "task_id", result_path, str),
        folder=folder,
        initial_prompt=initial_prompt,
        best_prompt=checked(read_json(best_path), "text", best_path, str),
        initial_loss=checked(result, "initial_loss", result_path),
        best_loss=checked(result, "best_loss", result_path),
        iterations=checked(result, "iterations", result_path, int),
        stop_reason=str(result.get("stop_reason", "")),
        training_cost=Cost(
            forward_passes=checked(budget, "forward_passes", result_path, int),
            tokens_scored=checked(budget, "tokens_scored", result_path, int),
            tokens_generated=checked(budget, "tokens_generated", result_path, int),
            seconds=checked(budget, "wall_seconds", result_path),
        ),
        points=points,
        evaluation=read_evaluation(evaluation_path) if evaluation_path.exists() else None,
    )


def read_history(path: Path) -> tuple[tuple[Point, ...], str]:
    """Every scored candidate, and the initial prompt's text (the row with role 'initial')."""
    try:
        table = pq.read_table(path, columns=["iteration", "role", "text", "loss"])
    except FileNotFoundError:
        raise ValueError(f"{path}: missing") from None
    except Exception as error:  # pyarrow raises several types for bad files and columns
        raise ValueError(f"{path}: cannot read ({error})") from None
    rows = table.to_pylist()
    initial = [r for r in rows if r["role"] == "initial"]
    if not initial:
        raise ValueError(f"{path}: no row with role 'initial'")
    points = tuple(
        Point(r["iteration"], math.nan if r["loss"] is None else r["loss"], r["role"]) for r in rows
    )
    return points, initial[0]["text"]


def read_evaluation(path: Path) -> Evaluation:
    data = read_json(path)
    prompts = checked(data, "prompts", path, list)
    if not prompts:
        raise ValueError(f"{path}: field 'prompts' is empty")
    scores = [prompt_score(p, f"{path} prompts[{i}]") for i, p in enumerate(prompts)]
    names = [s.name for s in scores]
    for required in ("initial", "optimized"):
        if required not in names:
            raise ValueError(f"{path}: field 'prompts' has no entry named {required!r}")
    order = {name: i for i, name in enumerate(BASELINE_ORDER)}
    scores.sort(key=lambda s: order.get(s.name, len(order)))
    counterfactual = data.get("generation_counterfactual")
    return Evaluation(
        format=checked(data, "format", path, str),
        answer_match=str(data.get("answer_match", "")),
        n_train=checked(data, "n_train", path, int),
        n_heldout=checked(data, "n_heldout", path, int),
        prompts=tuple(scores),
        counterfactual=read_counterfactual(counterfactual, path) if counterfactual else None,
        seconds=checked(data, "seconds", path),
    )


def prompt_score(data: dict, where: str) -> PromptScore:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object")
    return PromptScore(
        name=checked(data, "name", where, str),
        text=checked(data, "text", where, str),
        heldout_ce=checked(data, "heldout_ce", where),
        heldout_loss=checked(data, "heldout_loss", where),
        accuracy=optional_number(data, "accuracy", where),
        pairwise_accuracy=optional_number(data, "pairwise_accuracy", where),
        cost=Cost(
            forward_passes=checked(data, "forward_passes", where, int),
            tokens_scored=checked(data, "tokens_scored", where, int),
            tokens_generated=checked(data, "tokens_generated", where, int),
            seconds=checked(data, "seconds", where),
        ),
    )


def optional_number(data: dict, name: str, where: str) -> float | None:
    """A metric that only some task formats have: absent or null means "not measured"."""
    if data.get(name) is None:
        return None
    return checked(data, name, where)


def read_counterfactual(data: dict, path: Path) -> Counterfactual:
    where = f"{path} generation_counterfactual"
    return Counterfactual(
        candidates_scored=checked(data, "candidates_scored", where, int),
        train_examples=checked(data, "train_examples", where, int),
        mean_answer_tokens=checked(data, "mean_answer_tokens", where),
        generated_tokens=checked(data, "generated_tokens", where, int),
        loss_based_tokens_generated=checked(data, "loss_based_tokens_generated", where, int),
        length_from=str(data.get("answer_length_from", "")),
    )


def read_rounds(path: Path) -> tuple[dict, ...]:
    if not path.is_file():
        return ()
    rounds = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} line {number}: not valid JSON ({error})") from None
        if not isinstance(row, dict) or "round" not in row:
            raise ValueError(f"{path} line {number}: expected an object with field 'round'")
        rounds.append(row)
    return tuple(rounds)
