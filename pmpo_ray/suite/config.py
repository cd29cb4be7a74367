"""A suite: many tasks optimized together, sharing long-lived engine pools."""

from __future__ import annotations

from pydantic import Field, model_validator

from pmpo_ray.config import FrozenConfig, PromptFormat, RayConfig
from pmpo_ray.engines.registry import PoolConfig
from pmpo_ray.evaluation.config import EvaluationConfig
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.tasks.config import TaskConfig


class SuiteTask(FrozenConfig):
    task: TaskConfig = Field(..., description="Data, format, description and initial prompt.")
    optimizer: OptimizerConfig | None = Field(
        None, description="This task's budgets; None uses the suite's optimizer settings."
    )


class SuiteConfig(FrozenConfig):
    name: str = Field(..., min_length=1, description="Suite name, used in logs and results.")
    tasks: list[SuiteTask] = Field(..., min_length=1, description="The tasks to optimize.")
    optimizer: OptimizerConfig = Field(
        default_factory=OptimizerConfig, description="Default loop settings of every task."
    )
    scorer: PoolConfig = Field(default_factory=PoolConfig, description="Scorer replica pool.")
    rewriter: PoolConfig | None = Field(
        None, description="Rewriter pool; None sends generation to the scorer pool (one model)."
    )
    prompt_format: PromptFormat = Field(
        default_factory=PromptFormat, description="How prompts are rendered."
    )
    ray: RayConfig = Field(default_factory=RayConfig, description="Where Ray runs.")
    evaluation: EvaluationConfig = Field(
        default_factory=EvaluationConfig, description="Held-out evaluation of every task."
    )

    @model_validator(mode="after")
    def unique_task_names(self) -> "SuiteConfig":
        names = [t.task.name for t in self.tasks]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"task names must be unique; repeated: {repeated}")
        return self

    def optimizer_for(self, task: SuiteTask) -> OptimizerConfig:
        return task.optimizer or self.optimizer
