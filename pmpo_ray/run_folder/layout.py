"""The names and paths of everything a run folder holds; every other module asks here.

A task folder (`pmpo optimize --out`, or `tasks/<id>/` of a suite) holds the optimization
(history.parquet, iterations.json, best_prompt.json/.txt, result.json), the task's own resolved
config.yaml, and once evaluated, evaluation.json and predictions.parquet. A suite folder holds
state/ (run.json: the run's tasks and fingerprints; round-NNNN.json: what each round
changed), rounds.jsonl, tasks/<id>/, then config.yaml and suite.json
(written last: it marks a finished suite). Either may hold a report (report.md, report.html,
report_files/). A suite run with --overwrite works in .overwrite-staging/ (a whole suite folder
of its own) until it finishes, then swaps its results in (run_folder/swap.py).
"""

from __future__ import annotations

from pathlib import Path

# A task folder.
RESULT = "result.json"
CONFIG = "config.yaml"
HISTORY = "history.parquet"
ITERATIONS = "iterations.json"
BEST_PROMPT = "best_prompt.json"
BEST_PROMPT_TEXT = "best_prompt.txt"
EVALUATION = "evaluation.json"
PREDICTIONS = "predictions.parquet"
# What reading a task folder needs; iterations.json and best_prompt.txt are for people.
TASK_REQUIRED = (RESULT, CONFIG, HISTORY, BEST_PROMPT)

# A suite folder.
STATE_DIR = "state"
TASKS_DIR = "tasks"
ROUNDS_LOG = "rounds.jsonl"
SUITE_SUMMARY = "suite.json"

# A report, in either kind of folder.
REPORT_MARKDOWN = "report.md"
REPORT_HTML = "report.html"
REPORT_FILES = "report_files"

# Top-level outputs of a suite job, files then folders; --overwrite removes these and no more.
SUITE_FILES = (ROUNDS_LOG, SUITE_SUMMARY, CONFIG, REPORT_MARKDOWN, REPORT_HTML)
SUITE_FOLDERS = (STATE_DIR, REPORT_FILES)

# write_task_run stages a folder as tasks/.<id>.staging.XXXX before renaming it into place.
STAGING_MARK = ".staging."

# A suite run with --overwrite: its own suite folder inside `out`, so `out`'s results stay
# whole until the new ones exist; a fixed name, so --resume finds it. The manifest, written
# when the swap starts, lists what moves in, so a swap cut short can be finished.
OVERWRITE_STAGING = ".overwrite-staging"
SWAP_MANIFEST = ".swap-manifest.json"


def task_dir(out: Path, task_id: str) -> Path:
    """tasks/<id>/ of a suite folder; the id must be one plain folder name, so no task can
    write outside tasks/ (an id of '..' or 'a/b' would)."""
    bad = task_id in ("", ".", "..") or any(c in task_id for c in "/\\\0")
    if bad or task_id.startswith("."):
        raise ValueError(
            f"task {task_id!r}: a task name must be a plain folder name (no '/', '\\', and "
            "not starting with '.') because it names the task's folder under tasks/"
        )
    return Path(out) / TASKS_DIR / task_id


def state_dir(out: Path) -> Path:
    return Path(out) / STATE_DIR


def state_path(out: Path, round_index: int) -> Path:
    """The checkpoint written after round `round_index`: state/round-NNNN.json."""
    return state_dir(out) / f"round-{round_index:04d}.json"


def state_run_path(out: Path) -> Path:
    """state/run.json: which tasks the checkpoints are of, with their fingerprints."""
    return state_dir(out) / "run.json"


def state_files(out: Path) -> list[Path]:
    """Every round's checkpoint, oldest first (zero-padded names sort by round)."""
    return sorted(state_dir(out).glob("round-*.json"))


def rounds_log_path(out: Path) -> Path:
    return Path(out) / ROUNDS_LOG


def suite_summary_path(out: Path) -> Path:
    return Path(out) / SUITE_SUMMARY


def overwrite_staging_dir(out: Path) -> Path:
    return Path(out) / OVERWRITE_STAGING


def swap_manifest_path(out: Path) -> Path:
    return overwrite_staging_dir(out) / SWAP_MANIFEST


def suite_unfinished(out: Path) -> bool:
    """A suite whose optimization started (checkpoints exist, in `out` or in its --overwrite
    staging) but never finished (no suite.json in `out`)."""
    if suite_summary_path(out).exists():
        return False
    return state_dir(out).is_dir() or state_dir(overwrite_staging_dir(out)).is_dir()


def unfinished_suite_error(out: Path) -> ValueError:
    return ValueError(
        f"{out}: the suite's optimization is unfinished (no suite.json); finish it with "
        f"`pmpo suite CONFIG --out {out} --resume --evaluate`"
    )


def staging_prefix(run_dir: Path) -> str:
    return f".{run_dir.name}{STAGING_MARK}"


def task_dirs(run_dir: Path) -> tuple[str, tuple[Path, ...]]:
    """("task", the folder itself) for a `pmpo optimize` run, ("suite", tasks/*/) for a suite."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: no such run folder")
    if (run_dir / RESULT).is_file():
        return "task", (run_dir,)
    # Hidden folders are staging leftovers of a crash (task names never start with a dot).
    found = (run_dir / TASKS_DIR).glob(f"*/{RESULT}")
    folders = tuple(sorted(p.parent for p in found if not p.parent.name.startswith(".")))
    if not folders and suite_unfinished(run_dir):
        raise unfinished_suite_error(run_dir)
    if not folders:
        raise ValueError(
            f"{run_dir}: not a run folder (no {RESULT} of a task, no {TASKS_DIR}/*/{RESULT} "
            "of a suite)"
        )
    return "suite", folders


def result_paths(out: Path) -> list[Path]:
    """What exists of a suite job's outputs in `out`: the paths its --overwrite may remove.

    Top-level files and folders the job writes (and temporary files a crash left of them), and
    under tasks/ only task folders (holding a result.json) and leftover staging folders. A
    user's other files, in `out` or in tasks/, are never listed. Evaluation files live inside
    the task folders, so they go with them.
    """
    out = Path(out)
    if not out.is_dir():
        return []
    paths = [out / name for name in SUITE_FILES + SUITE_FOLDERS + (OVERWRITE_STAGING,)]
    for name in SUITE_FILES:  # atomic_write's temporaries: .NAME.XXXX.tmp
        paths += out.glob(f".{name}.*.tmp")
    tasks = out / TASKS_DIR
    if tasks.is_dir() and not tasks.is_symlink():
        for entry in tasks.iterdir():
            if entry.is_symlink() or not entry.is_dir():
                continue
            if (entry / RESULT).is_file() or (
                entry.name.startswith(".") and STAGING_MARK in entry.name
            ):
                paths.append(entry)
    return sorted({p for p in paths if p.exists() or p.is_symlink()})
