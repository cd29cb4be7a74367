"""Errors from inside Ray, read like errors from the command line.

A failure in a replica or a Ray Data task reaches the driver wrapped two or three times
(RayTaskError around UserCodeException around the real error), printed as 70-odd lines with the
real message last. The Ray Data client rebuilds a replica's error (engines/ray_data_client.py
`job_error`); commands print any error from Ray as one line with its root cause and where it
happened, and keep the whole trace in a log file whose path the line gives.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

# Root causes that are the user's input, by name (they cross process boundaries as text).
USER_ERROR_NAMES = frozenset({"ValueError", "ModelNotFoundError"})


class ReplicaError(RuntimeError):
    """A replica failed on a request for a reason other than the user's input."""


class PoolDownError(RuntimeError):
    """A pool has no replica left to answer: its replicas died and did not come back."""


def first_line(error: BaseException, limit: int | None = None) -> str:
    """Errors from Ray and the hub run to dozens of lines; a one-line message needs the first
    (the error's type name when it has no text)."""
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:limit]


def root_cause(error: BaseException) -> BaseException:
    """The innermost error: Ray's wrappers keep it in `.cause`, Python's in `__cause__`."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        inner = getattr(error, "cause", None) or error.__cause__
        if not isinstance(inner, BaseException):
            break
        error = inner
    return error


def is_from_ray(error: BaseException) -> bool:
    if "ray" not in sys.modules:
        return False
    from ray.exceptions import RayError

    return isinstance(error, RayError)


def write_trace(error: BaseException) -> Path | None:
    """The full trace, in a file of its own (for a bug report): in $PMPO_LOG_DIR, else (or if
    that cannot be written) the temp folder; None if neither can."""
    name = f"pmpo-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    text = "".join(traceback.format_exception(error))
    for folder in (os.environ.get("PMPO_LOG_DIR"), tempfile.gettempdir()):
        if not folder:
            continue
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / name).write_text(text, encoding="utf-8")
        except OSError:
            continue
        return Path(folder) / name
    return None


def one_line(error: BaseException) -> str:
    """The error's first line (its root cause's, for a Ray error) and where its trace went."""
    cause = root_cause(error) if is_from_ray(error) else error
    kind = "" if isinstance(cause, ReplicaError) else f"{type(cause).__name__}: "
    trace = write_trace(error)
    return f"{kind}{first_line(cause)}" + (f" (full trace: {trace})" if trace else "")
