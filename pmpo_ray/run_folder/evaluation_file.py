"""Read a task's evaluation.json (as `pmpo evaluate` writes it) into an `Evaluation` record."""

from __future__ import annotations

from pathlib import Path

from pmpo_ray.run_folder.fields import checked, optional_number, read_json
from pmpo_ray.run_folder.records import Cost, Counterfactual, Evaluation, PromptScore

# Initial and optimized first, then the standard baselines, then any configured ones.
PROMPT_ORDER = ("initial", "optimized", "no_instruction", "step_by_step")


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
    order = {name: i for i, name in enumerate(PROMPT_ORDER)}
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
        option_accuracy=optional_number(data, "option_accuracy", where),
        option_accuracy_norm=optional_number(data, "option_accuracy_norm", where),
        cost=Cost(
            forward_passes=checked(data, "forward_passes", where, int),
            tokens_scored=checked(data, "tokens_scored", where, int),
            tokens_generated=checked(data, "tokens_generated", where, int),
            seconds=checked(data, "seconds", where),
        ),
    )


def read_counterfactual(data, path: Path) -> Counterfactual:
    where = f"{path} generation_counterfactual"
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object")
    return Counterfactual(
        candidates_scored=checked(data, "candidates_scored", where, int),
        train_examples=checked(data, "train_examples", where, int),
        mean_answer_tokens=checked(data, "mean_answer_tokens", where),
        generated_tokens=checked(data, "generated_tokens", where, int),
        loss_based_tokens_generated=checked(data, "loss_based_tokens_generated", where, int),
        length_from=str(data.get("answer_length_from", "")),
    )
