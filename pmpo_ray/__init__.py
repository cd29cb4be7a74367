"""pmpo-ray: PMPO prompt optimization (loss-based, no judge) on Ray and vLLM.

    import pmpo_ray
    result = pmpo_ray.optimize("pipelines/tasks/navigate.yaml", optimizer={"iterations": 2})

The calls of the API (pmpo_ray/api.py) and the configs they take; engines are opened with
`open_engines` (pmpo_ray/engines/client.py). See ARCHITECTURE.md for the map of the package.
"""

from pmpo_ray.api import evaluate, optimize, optimize_suite, plan, report, study
from pmpo_ray.config import ModelConfig, PromptFormat, RayConfig, ReplicaConfig
from pmpo_ray.engines.client import EngineClient, open_engines
from pmpo_ray.engines.hf_engine import HfConfig
from pmpo_ray.engines.openai_config import OpenAiConfig
from pmpo_ray.engines.registry import PoolConfig
from pmpo_ray.engines.vllm_engine import VllmConfig
from pmpo_ray.jobs import (
    EvaluationConfig,
    OptimizeJobConfig,
    ScoreJobConfig,
    SuiteConfig,
    SuiteTask,
)
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.pmpo.records import OptimizationResult
from pmpo_ray.studies.config import StudyConfig
from pmpo_ray.studies.run import StudyResult
from pmpo_ray.suite.round_report import RoundReport
from pmpo_ray.suite.run import SuiteResult
from pmpo_ray.tasks.config import TaskConfig
from pmpo_ray.tasks.task import Task, load_task

__all__ = [
    "EngineClient",
    "EvaluationConfig",
    "HfConfig",
    "ModelConfig",
    "OpenAiConfig",
    "OptimizationResult",
    "OptimizeJobConfig",
    "OptimizerConfig",
    "PoolConfig",
    "PromptFormat",
    "RayConfig",
    "ReplicaConfig",
    "RoundReport",
    "ScoreJobConfig",
    "StudyConfig",
    "StudyResult",
    "SuiteConfig",
    "SuiteResult",
    "SuiteTask",
    "Task",
    "TaskConfig",
    "VllmConfig",
    "evaluate",
    "load_task",
    "open_engines",
    "optimize",
    "optimize_suite",
    "plan",
    "report",
    "study",
]
