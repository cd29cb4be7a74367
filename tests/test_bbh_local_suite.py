"""pipelines/suites/bbh_local.yaml runs for real: three of its tasks, read from the local BBH
folder through `--set data_root=../shared/data/bbh`, optimized by the suite job entrypoint on
one vLLM replica of the default model in the session's local Ray (tiny budgets: about a
minute). Skipped where the folder is absent (a clean clone without ../shared)."""

import json
import math
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "pipelines" / "suites" / "bbh_local.yaml"
DATA_ROOT = "../shared/data/bbh"  # as the suite's header command writes it, from the repo root
DATA = (ROOT / DATA_ROOT).resolve()
# A supervised task, a multiple-choice one, and movie_recommendation, whose folder file has
# the one row `invalid_rows: skip` leaves out.
TASKS = ("boolean_expressions", "hyperbaton", "movie_recommendation")

pytestmark = [
    pytest.mark.engine,
    pytest.mark.ray,
    pytest.mark.skipif(
        not all((DATA / f"{name}.json").is_file() for name in TASKS),
        reason=f"no local BBH folder at {DATA} (../shared/data/bbh beside the repo)",
    ),
]


def three_task_suite(path: Path) -> Path:
    """bbh_local.yaml with three of its tasks and tiny budgets, written to `path`."""
    config = yaml.safe_load(SUITE.read_text())
    entries = {entry["task"]["name"]: entry for entry in config["tasks"]}
    config["tasks"] = [entries[name] for name in TASKS]
    for entry in config["tasks"]:
        entry["task"]["max_train"] = 3
    config["optimizer"].update(
        iterations=1,
        hard_cases=1,
        rewrites_per_case=1,
        max_rewrite_tokens=48,
        max_segmentation_tokens=48,
    )
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_three_tasks_of_the_local_suite_optimize_from_the_folder(
    tmp_path, local_ray, monkeypatch, capsys
):
    from pipelines.optimize_suite import main

    monkeypatch.chdir(ROOT)  # data_root is relative, as in the suite's header command
    out = tmp_path / "bbh_local"
    code = main(
        [
            "--config",
            str(three_task_suite(tmp_path / "suite.yaml")),
            "--out",
            str(out),
            "--set",
            f"data_root={DATA_ROOT}",
            # one replica: the session's local Ray has 2 CPUs, and Ray Data needs one
            "--set",
            "scorer.replicas.num_replicas=1",
        ]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err

    summary = json.loads((out / "suite.json").read_text())
    assert list(summary) == list(TASKS)
    for name in TASKS:
        folder = out / "tasks" / name
        result = json.loads((folder / "result.json").read_text())
        assert result["iterations"] == 1, result
        assert math.isfinite(result["initial_loss"]) and math.isfinite(result["best_loss"])
        assert result["best_loss"] <= result["initial_loss"]
        assert result["work"]["forward_passes"] > 0
        job = yaml.safe_load((folder / "config.yaml").read_text())
        assert job["task"]["data"] == str(DATA / f"{name}.json")  # read from the folder
    skipped = json.loads((out / "tasks" / "movie_recommendation" / "result.json").read_text())
    assert skipped["skipped_rows"] == {"target matches no option": 1}
