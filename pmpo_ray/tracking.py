"""Where a suite run's experiment tracking goes (suite/mlflow_tracking.py logs it): configs
only, so a job config can name them without importing a tracker."""

from __future__ import annotations

from pydantic import Field

from pmpo_ray.config import FrozenConfig


class MlflowConfig(FrozenConfig):
    """Where a suite run is logged in MLflow (suite/mlflow_tracking.py)."""

    tracking_uri: str = Field(
        ...,
        min_length=1,
        description="The MLflow tracking URI: a server (http://host:5000), a database "
        "(sqlite:///mlflow.db) or a local store (file:/path/mlruns, which MLflow 3 accepts "
        "only with MLFLOW_ALLOW_FILE_STORE=true).",
    )
    experiment: str | None = Field(
        None, min_length=1, description="The experiment's name; None: the suite's name."
    )
    run_name: str | None = Field(
        None, min_length=1, description="The suite's (parent) run name; None: --out's name."
    )


class TrackingConfig(FrozenConfig):
    """Experiment tracking of a suite run, logged from the driver; never changes results."""

    mlflow: MlflowConfig = Field(
        ...,
        description="Log to MLflow (`pip install 'pmpo-ray[mlflow]'`): a run per suite with a "
        "nested run per task; configs, every round's losses and work, held-out metrics, and "
        "each task's best prompt and history.",
    )
