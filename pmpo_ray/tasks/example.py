"""One labelled example: what every task format loads its data into."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """One labelled example: `target` is the reference (or chosen) answer; `rejected` holds
    distractor options or rejected answers, scored only by the preference objective.
    `answer` is what held-out accuracy compares a generated answer with (GSM8K: the final
    number, while `target` is the whole worked solution); empty means `target`."""

    example_id: str
    input: str
    target: str
    rejected: tuple[str, ...] = ()
    answer: str = ""

    @property
    def gold_answer(self) -> str:
        return self.answer or self.target
