"""Job configs: what each entry point runs, in one place.

A job names its scorer and rewriter the same way everywhere, as pools (`PoolConfig`: an
engine, and the replicas Ray runs of it): `pmpo optimize` (`OptimizeJobConfig`), a suite
(`SuiteConfig`: every task folder of it holds its task's `OptimizeJobConfig`), and `pmpo score`
(`ScoreJobConfig`). The optimizer's own settings stay in `pmpo/config.py`; the study's config
is in `studies/config.py` beside the variant table it checks names against.

Keys that moved fail in one line that gives the new spelling (`moved_keys`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from pmpo_ray.config import EngineSettings, FrozenConfig, PromptFormat, RayConfig
from pmpo_ray.engines.registry import PoolConfig
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.tasks.config import TaskConfig
from pmpo_ray.tracking import TrackingConfig

log = logging.getLogger(__name__)

STEP_BY_STEP = "Let's think step by step."


class EvaluationConfig(FrozenConfig):
    baselines: dict[str, str] = Field(
        default_factory=lambda: {"no_instruction": "", "step_by_step": STEP_BY_STEP},
        description="Prompts evaluated beside the initial and optimized ones, by name; the "
        "empty prompt means no instruction at all.",
    )
    max_examples: int | None = Field(
        None,
        ge=1,
        description="Evaluate on the first N held-out examples only (a cheaper, noisier "
        "estimate); None uses the whole held-out split.",
    )
    max_answer_tokens: int = Field(
        96, ge=1, description="Generation budget of one greedy answer for accuracy."
    )
    accuracy: bool = Field(
        True,
        description="Measure accuracy by greedy generation and answer extraction (not for "
        "preference tasks, which report pairwise accuracy from log-probabilities).",
    )


class OptimizeJobConfig(FrozenConfig):
    task: TaskConfig = Field(..., description="The task to optimize.")
    optimizer: OptimizerConfig = Field(
        default_factory=OptimizerConfig, description="Loop settings."
    )
    scorer: PoolConfig = Field(
        default_factory=PoolConfig,
        description="Scorer pool: its engine (and its replicas, when run on Ray).",
    )
    rewriter: PoolConfig | None = Field(
        None,
        description="Rewriter pool (segments and rewrites); None sends generation to the "
        "scorer (one model: the paper's setting).",
    )
    prompt_format: PromptFormat = Field(
        default_factory=PromptFormat, description="How prompts are rendered."
    )
    evaluation: EvaluationConfig = Field(
        default_factory=EvaluationConfig, description="Held-out evaluation (`pmpo evaluate`)."
    )

    @field_validator("scorer", "rewriter", mode="before")
    @classmethod
    def pools_not_engines(cls, value: Any, info: ValidationInfo) -> Any:
        return engine_not_pool(info.field_name, value)


# Task fields naming data that `data_root` resolves.
DATA_FIELDS = ("data", "test_data")
# Sources that are not local files: never resolved against `data_root`.
NOT_LOCAL_PREFIXES = ("builtin:", "hf:")
MISSING_FILES_NAMED = 5  # in the error of a data_root that lacks files


class SuiteTask(FrozenConfig):
    task: TaskConfig = Field(..., description="Data, format, description and initial prompt.")
    optimizer: OptimizerConfig | None = Field(
        None, description="This task's budgets; None uses the suite's optimizer settings."
    )


class SuiteConfig(FrozenConfig):
    name: str = Field(..., min_length=1, description="Suite name, used in logs and results.")
    # Declared before `tasks`: the tasks' validator reads it.
    data_root: Path | None = Field(
        None,
        description="Folder that tasks' relative local `data` and `test_data` paths are read "
        "from (e.g. a local BBH checkout, given at run time with `--set data_root=DIR`); "
        "'builtin:' and 'hf:' sources and absolute paths are used as written. A relative "
        "data_root is read from the working directory; None reads relative task paths from the "
        "working directory. The tasks' paths are stored resolved, so each task folder's "
        "config.yaml names the file its data came from.",
    )
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
    cohorts: int | None = Field(
        None,
        ge=1,
        description="Groups the tasks play their rounds in, half a round apart: while one "
        "cohort generates another scores, so a separate rewriter pool and the scorer pool are "
        "busy at once. 1: every task's stage in one job. None: 2 with a rewriter pool of its "
        "own, else 1 (on one shared pool, halving the generation batches costs more than the "
        "overlap gains). Results are the same for any value. On Ray only: engines in this "
        "process are called in turn, every task's stage in one call.",
    )
    tracking: TrackingConfig | None = Field(
        None,
        description="Experiment tracking (MLflow); None logs nowhere but the run folder. "
        "An unreachable tracking server is warned about once and never stops the run.",
    )

    @field_validator("data_root")
    @classmethod
    def data_root_is_a_folder(cls, root: Path | None) -> Path | None:
        if root is None:
            return None
        resolved = root.expanduser().resolve()
        if not resolved.is_dir():
            raise user_error("data_root_missing", f"no such folder: {resolved}")
        return resolved

    @field_validator("tasks")
    @classmethod
    def tasks_read_from_data_root(
        cls, tasks: list[SuiteTask], info: ValidationInfo
    ) -> list[SuiteTask]:
        """Relative local data paths joined to `data_root`; each must name a file, so a missing
        one fails here (task, field and path named) before any engine starts."""
        root = info.data.get("data_root")  # absent when data_root itself was refused
        if root is None:
            return tasks
        joined = [joined_to_root(entry, root) for entry in tasks]
        missing = [problem for _, problems in joined for problem in problems]
        if missing:  # a few named, the rest counted: a wrong root would list every task
            named = missing[:MISSING_FILES_NAMED]
            if more := len(missing) - len(named):
                named.append(f"and {more} more file(s) missing under {root}")
            raise user_error("data_file_missing", "; ".join(named))
        return [entry for entry, _ in joined]

    @model_validator(mode="after")
    def unique_task_names(self) -> "SuiteConfig":
        names = [t.task.name for t in self.tasks]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"task names must be unique; repeated: {repeated}")
        return self

    def stage_cohorts(self) -> int:
        """How many cohorts the tasks play in (see `cohorts`)."""
        if self.cohorts is not None:
            return self.cohorts
        return 2 if self.rewriter is not None else 1

    def optimizer_for(self, task: SuiteTask) -> OptimizerConfig:
        return task.optimizer or self.optimizer


def joined_to_root(entry: SuiteTask, root: Path) -> tuple[SuiteTask, list[str]]:
    """`entry` with its relative local data paths joined to `root`, and a line for each
    joined path that is no file."""
    update, problems = {}, []
    for field in DATA_FIELDS:
        reference = getattr(entry.task, field)
        if reference is None or not is_local_relative(reference):
            continue
        path = root / reference
        update[field] = str(path)
        if not path.is_file():
            problems.append(
                f"task {entry.task.name!r}: field '{field}' ({reference} under data_root): "
                f"no such file {path}"
            )
    if not update:
        return entry, problems
    return entry.model_copy(update={"task": entry.task.model_copy(update=update)}), problems


def is_local_relative(reference: str) -> bool:
    """A relative file path: not a 'builtin:' sample, not a hub dataset, not absolute."""
    if reference.startswith(NOT_LOCAL_PREFIXES):
        return False
    return not Path(reference).expanduser().is_absolute()


def user_error(kind: str, message: str) -> PydanticCustomError:
    """A validation error whose message is `message` as written (a ValueError would get
    pydantic's 'Value error, ' prefix)."""
    return PydanticCustomError(kind, "{message}", {"message": message})


# Engine settings written where a pool is expected: the shape roots had before every root
# named its engines as pools.
ENGINE_KEYS = frozenset(EngineSettings.model_fields) | {"backend"}


def engine_not_pool(role: str, value: Any) -> Any:
    """`value` unchanged unless it is an engine config written where a pool goes (the old
    shape of `scorer:`/`rewriter:`), which fails in one line giving the new spelling."""
    if isinstance(value, dict) and "engine" not in value and any(k in value for k in ENGINE_KEYS):
        raise user_error(
            "moved_key",
            f"{role} is a pool now: write its engine under `{role}.engine` (e.g. "
            f"`{role}: {{engine: {{backend: vllm}}}}`)",
        )
    return value


def moved_keys(raw: Any, moves: dict[str, str]) -> Any:
    """`raw` unchanged unless it holds a key of `moves` (old key -> new dotted spelling),
    which fails in one line naming both."""
    if isinstance(raw, dict):
        for old, new in moves.items():
            if old in raw:
                raise user_error("moved_key", f"`{old}` moved: write `{new}` instead")
    return raw


class ScoreJobConfig(FrozenConfig):
    """`pmpo score`: one prompt scored on a data file, in process or on Ray replicas."""

    scorer: PoolConfig = Field(
        default_factory=PoolConfig,
        description="Scorer pool: its engine (and its replicas, with --replicas).",
    )
    prompt_format: PromptFormat = Field(
        default_factory=PromptFormat, description="How prompts are rendered."
    )
    ray: RayConfig = Field(default_factory=RayConfig, description="Where Ray runs.")

    @model_validator(mode="before")
    @classmethod
    def old_keys(cls, raw: Any) -> Any:
        return moved_keys(raw, {"engine": "scorer.engine", "replicas": "scorer.replicas"})

    @field_validator("scorer", mode="before")
    @classmethod
    def pool_not_engine(cls, value: Any) -> Any:
        return engine_not_pool("scorer", value)


def writable_optimizer(optimizer: OptimizerConfig, writer: PoolConfig) -> OptimizerConfig:
    """The optimizer settings a rewriter can follow: one that cannot continue a prefill (a
    hosted API without continue_final_message) gets the long meta-prompt, which needs none,
    instead of the short one; the job's config.yaml then records the form used."""
    if optimizer.meta_prompt == "short" and not writer.engine.prefills:
        log.warning(
            "the rewriter %s cannot continue a prefill: rewrites use the long meta-prompt",
            writer.engine.model.name,
        )
        return optimizer.model_copy(update={"meta_prompt": "long"})
    return optimizer


def as_run(job: OptimizeJobConfig) -> OptimizeJobConfig:
    """`job` as it runs (see writable_optimizer)."""
    optimizer = writable_optimizer(job.optimizer, job.rewriter or job.scorer)
    return job if optimizer is job.optimizer else job.model_copy(update={"optimizer": optimizer})


def task_job_config(suite: SuiteConfig, entry: SuiteTask) -> OptimizeJobConfig:
    """`entry`, one of `suite.tasks`, as the job config it runs under: exactly what its task
    folder's config.yaml holds (its task and optimizer, the suite's pools, prompt format and
    evaluation), so the folder evaluates and reports on its own like a `pmpo optimize` run's."""
    return OptimizeJobConfig(
        task=entry.task,
        optimizer=writable_optimizer(suite.optimizer_for(entry), suite.rewriter or suite.scorer),
        scorer=suite.scorer,
        rewriter=suite.rewriter,
        prompt_format=suite.prompt_format,
        evaluation=suite.evaluation,
    )


def with_iterations(config: SuiteConfig, iterations: int) -> SuiteConfig:
    """Every task's iteration count set to `iterations`, including tasks with their own
    optimizer settings."""
    tasks = [
        entry.model_copy(
            update={"optimizer": entry.optimizer.model_copy(update={"iterations": iterations})}
        )
        if entry.optimizer is not None
        else entry
        for entry in config.tasks
    ]
    optimizer = config.optimizer.model_copy(update={"iterations": iterations})
    return config.model_copy(update={"optimizer": optimizer, "tasks": tasks})
