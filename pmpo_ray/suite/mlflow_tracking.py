"""A suite run logged to MLflow (the optional `[mlflow]` extra), from the driver only.

`tracking: {mlflow: {tracking_uri, experiment, run_name}}` in the suite config (or `pmpo suite
--mlflow URI`) logs one parent run per suite and a nested run per task (tagged
`mlflow.parentRunId`): the resolved configs as params (dotted keys: the suite's on the parent,
each task's job config on its run); after every round, with step = round, each task's training
loss (best so far), iterations and work, and on the parent the round's rounds.jsonl figures
(tokens, requests, stage times, pool busy fractions) and tasks done; at the end the held-out
metrics of each task's evaluation.json (`heldout/<prompt>/<field>`) and as artifacts each
task's best_prompt.txt, history.parquet, config.yaml (and evaluation.json), and the suite's
config.yaml, suite.json and report, if one was written.

Tracking never changes results and never stops or stalls a run: the first failure talking to
MLflow (an unreachable server, a refused store) is warned about once and turns the tracker off
for the rest of the run, and every HTTP call is bounded (`HTTP_BOUNDS`, unless the environment
sets MLflow's variables itself). It uses `MlflowClient` with explicit run ids, never MLflow's
global active run. A resumed run starts new MLflow runs; its rounds continue the step numbers.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.util import find_spec
from numbers import Real
from pathlib import Path

from pmpo_ray.jobs import OptimizeJobConfig, SuiteConfig
from pmpo_ray.run_folder import layout
from pmpo_ray.run_folder.evaluation_file import read_evaluation
from pmpo_ray.suite.fingerprint import flat_fields
from pmpo_ray.suite.round_report import RoundReport
from pmpo_ray.tracking import MlflowConfig, TrackingConfig

log = logging.getLogger(__name__)

INSTALL = "pip install 'pmpo-ray[mlflow]'"
PARENT_TAG = "mlflow.parentRunId"  # what MLflow nests a run under
# MLflow reads these at every call; its defaults retry for minutes, which would stall rounds
# behind an unreachable server. Worst case per call: two tries of 10 s, once (then it is off).
HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
PARAM_CHARS = 500  # a longer value is cut (servers cap values; the configs go as artifacts)
KEY_CHARS = 250  # MLflow's limit on a key: a longer one is skipped
PARAMS_PER_CALL = 100  # MLflow's limits per log_batch call
METRICS_PER_CALL = 1000
WORK = ("forward_passes", "tokens_scored", "generation_requests", "tokens_generated")
HELDOUT = (
    "heldout_ce",
    "heldout_loss",
    "accuracy",
    "pairwise_accuracy",
    "option_accuracy",
    "option_accuracy_norm",
)
TASK_ARTIFACTS = (layout.BEST_PROMPT_TEXT, layout.HISTORY, layout.CONFIG, layout.EVALUATION)
SUITE_ARTIFACTS = (layout.CONFIG, layout.SUITE_SUMMARY, layout.REPORT_MARKDOWN, layout.REPORT_HTML)


def require_mlflow(tracking: TrackingConfig | None) -> None:
    """With tracking configured, MLflow must be installed: else one line saying how (before
    anything is written or any engine starts)."""
    if tracking is not None and find_spec("mlflow") is None:
        raise ValueError(f"tracking.mlflow is set but MLflow is not installed: {INSTALL}")


@contextmanager
def suite_tracking(
    config: SuiteConfig, jobs: Sequence[OptimizeJobConfig], out: Path
) -> Iterator[MlflowTracker]:
    """A tracker of the suite run in `out` (inert without `config.tracking`): its runs are
    opened now, and when the block ends, the run folder's results logged and the runs ended
    FINISHED, or FAILED (KILLED on an interrupt) when it raises."""
    tracker = MlflowTracker(config.tracking.mlflow if config.tracking is not None else None)
    tracker.open(config, jobs, Path(out))
    try:
        yield tracker
    except BaseException as error:
        tracker.end("FAILED" if isinstance(error, Exception) else "KILLED")
        raise
    tracker.log_results(Path(out))
    tracker.end("FINISHED")


class MlflowTracker:
    """A suite's parent run and its tasks' nested runs. Every public method is safe to call:
    it does nothing once tracking is off, and a failure turns it off (one warning)."""

    def __init__(self, settings: MlflowConfig | None):
        self.settings = settings
        self.off = settings is None
        self.client = None
        self.parent = ""  # the suite's run id
        self.runs: dict[str, str] = {}  # task id -> its nested run id
        self.done: set[str] = set()  # tasks whose last round is logged
        self.last_round = 0

    def callbacks(self) -> list:
        """The round callbacks to add: none once tracking is off."""
        return [] if self.off else [self.on_round]

    def open(self, config: SuiteConfig, jobs: Sequence[OptimizeJobConfig], out: Path) -> None:
        self._guard(self._open, config, jobs, out)

    def on_round(self, report: RoundReport) -> None:
        self._guard(self._log_round, report)

    def log_results(self, out: Path) -> None:
        self._guard(self._log_results, out)

    def end(self, status: str) -> None:
        self._guard(self._end, status)

    def _guard(self, call, *args) -> None:
        if self.off:
            return
        try:
            with bounded_http():
                call(*args)
        except Exception as error:  # tracking must never fail the optimization
            self.off = True
            log.warning(
                "MLflow tracking (%s) is off for the rest of this run: %s",
                self.settings.tracking_uri,
                first_line(error),
            )

    def _open(self, config: SuiteConfig, jobs: Sequence[OptimizeJobConfig], out: Path) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=self.settings.tracking_uri)
        name = self.settings.experiment or config.name
        found = self.client.get_experiment_by_name(name)
        experiment = found.experiment_id if found else self.client.create_experiment(name)
        run_name = self.settings.run_name or out.name
        parent = self.client.create_run(experiment, run_name=run_name, tags={"pmpo.out": str(out)})
        self.parent = parent.info.run_id
        suite = config.model_dump(mode="json")
        suite["tasks"] = [job.task.name for job in jobs]  # each task's config is on its run
        self._log_params(self.parent, suite)
        for job in jobs:
            tags = {PARENT_TAG: self.parent, "pmpo.task": job.task.name}
            run = self.client.create_run(experiment, run_name=job.task.name, tags=tags)
            self.runs[job.task.name] = run.info.run_id
            self._log_params(run.info.run_id, job.model_dump(mode="json"))

    def _log_round(self, report: RoundReport) -> None:
        self.last_round = report.round
        line = {key: value for key, value in report.line.items() if key != "round"}
        self._log_metrics(self.parent, {**line, "tasks_done": report.tasks_done}, report.round)
        for standing in report.tasks:
            run_id = self.runs.get(standing.task_id)
            if run_id is None or standing.task_id in self.done:  # its curve has ended
                continue
            values = {"best_loss": standing.best_loss, "iterations": standing.iterations}
            values.update({name: getattr(standing.work, name) for name in WORK})
            self._log_metrics(run_id, values, report.round)
            if standing.done:
                self.done.add(standing.task_id)

    def _log_results(self, out: Path) -> None:
        for task_id, run_id in self.runs.items():
            folder = layout.task_dir(out, task_id)
            if (folder / layout.EVALUATION).is_file():
                evaluation = read_evaluation(folder / layout.EVALUATION)
                values = {
                    f"heldout/{prompt.name}/{field}": getattr(prompt, field)
                    for prompt in evaluation.prompts
                    for field in HELDOUT
                }
                self._log_metrics(run_id, values, self.last_round)
            self._log_files(run_id, folder, TASK_ARTIFACTS)
        self._log_files(self.parent, out, SUITE_ARTIFACTS)
        if (out / layout.REPORT_FILES).is_dir():
            self.client.log_artifacts(self.parent, str(out / layout.REPORT_FILES), "report_files")

    def _end(self, status: str) -> None:
        for run_id in [*self.runs.values(), self.parent]:
            if run_id:
                self.client.set_terminated(run_id, status)

    def _log_params(self, run_id: str, raw: dict) -> None:
        from mlflow.entities import Param

        fields = {metric_key(key): value for key, value in flat_fields(raw).items()}
        params = [
            Param(key, param_value(value)) for key, value in fields.items() if len(key) <= KEY_CHARS
        ]
        for start in range(0, len(params), PARAMS_PER_CALL):
            self.client.log_batch(run_id, params=params[start : start + PARAMS_PER_CALL])

    def _log_metrics(self, run_id: str, values: dict, step: int) -> None:
        """The numbers of `values` (None and text left out) at `step`."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(metric_key(key), float(value), now, step)
            for key, value in values.items()
            if isinstance(value, Real) and len(key) <= KEY_CHARS
        ]
        for start in range(0, len(metrics), METRICS_PER_CALL):
            self.client.log_batch(run_id, metrics=metrics[start : start + METRICS_PER_CALL])

    def _log_files(self, run_id: str, folder: Path, names: Sequence[str]) -> None:
        for name in names:
            if (folder / name).is_file():
                self.client.log_artifact(run_id, str(folder / name))


@contextmanager
def bounded_http():
    """MLflow's HTTP calls bounded by `HTTP_BOUNDS` within the block, where the environment
    sets no bound of its own (the driver's thread is the only one calling MLflow)."""
    added = [name for name in HTTP_BOUNDS if name not in os.environ]
    os.environ.update({name: HTTP_BOUNDS[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def metric_key(key: str) -> str:
    """`key` with the characters MLflow refuses in a name (e.g. in a baseline's) as '_'."""
    return re.sub(r"[^\w\-. /]", "_", key)


def param_value(value: object) -> str:
    """A config value as text (JSON unless it is text), cut to PARAM_CHARS."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= PARAM_CHARS else text[: PARAM_CHARS - 1] + "…"


def first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"
