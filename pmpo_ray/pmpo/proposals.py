"""Where a rewrite round's new prompts come from: which training examples each request is
built on, and what the rewriter is asked.

PMPO's own proposal rewrites the prompt from its hardest examples and its masking result. The
other proposals exist to measure what each of those parts is worth (pipelines/study.py): the
same round with random examples instead of the hardest, an APE-style instruction induced from
a few random examples, or a plain paraphrase of the prompt that sees no example and no
analysis. Every proposal's output is vetted, scored and selected the same way.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence

from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.pmpo.rewrite import rewrite_request
from pmpo_ray.pmpo.select import hard_cases
from pmpo_ray.tasks.example import Example

# Our wording of APE's instruction induction (Zhou et al. 2022): the model sees input/output
# pairs and names the instruction that produced them.
APE_META_PROMPT = """Task: {task_description}
An assistant was given an instruction and answered each input below correctly.
{demonstrations}
Write the instruction it was given, for every input of this task, inside <prompt></prompt>."""

PARAPHRASE_META_PROMPT = """Prompt: {current_prompt}
Task: {task_description}
Write a different version of this prompt for the whole task inside <prompt></prompt>."""

_FIELD = re.compile(r"\{(task_description|demonstrations|current_prompt)\}")


def chosen_cases(
    config: OptimizerConfig,
    losses: Mapping[str, float],
    *,
    iteration: int,
    parent_id: str,
) -> list[str]:
    """The k example ids a parent's requests are built on: the highest-loss ones, or (the
    ablation) k drawn at random, a fresh draw per seed, iteration and parent."""
    if config.case_selection == "hardest":
        return hard_cases(losses, config.hard_cases)
    # A str seed is hashed deterministically (not with PYTHONHASHSEED): reruns draw the same.
    draw = random.Random(f"{config.seed}:{iteration}:{parent_id}")
    return draw.sample(sorted(losses), config.hard_cases)


def proposal_message(
    config: OptimizerConfig,
    *,
    task_description: str,
    case: Example,
    train: Sequence[Example],
    analysis: str,
    current_prompt: str,
    request_seed: int,
) -> str:
    """What the rewriter is asked for one request of `config.proposal`."""
    if config.proposal == "pmpo":
        return rewrite_request(
            config.meta_prompt,
            task_description=task_description,
            user_input=case.input,
            true_answer=case.target,
            mask_analysis=analysis,
            current_prompt=current_prompt,
        )
    if config.proposal == "ape":
        demos = demonstrations(case, train, config.demonstrations, request_seed)
        return fill(APE_META_PROMPT, task_description=task_description, demonstrations=demos)
    return fill(
        PARAPHRASE_META_PROMPT, task_description=task_description, current_prompt=current_prompt
    )


def shown_examples(
    config: OptimizerConfig, *, case: Example, train: Sequence[Example], request_seed: int
) -> tuple[Example, ...]:
    """The examples `proposal_message` shows the rewriter for the same arguments: those its
    rewrites are vetted against (a paraphrase shows none)."""
    if config.proposal == "pmpo":
        return (case,)
    if config.proposal == "ape":
        return demonstrated(case, train, config.demonstrations, request_seed)
    return ()


def demonstrated(
    case: Example, train: Sequence[Example], count: int, seed: int
) -> tuple[Example, ...]:
    """`case` and count-1 other training examples drawn at random."""
    others = [example for example in train if example.example_id != case.example_id]
    return (case, *random.Random(seed).sample(others, min(count - 1, len(others))))


def demonstrations(case: Example, train: Sequence[Example], count: int, seed: int) -> str:
    """`demonstrated(...)` as Input/Output pairs."""
    shown = demonstrated(case, train, count, seed)
    return "\n".join(f"Input: {e.input}\nOutput: {e.target}\n" for e in shown)


def fill(template: str, **values: str) -> str:
    """One regex pass, so braces inside a value are copied as they are, never expanded."""
    return _FIELD.sub(lambda match: values[match.group(1)], template)
