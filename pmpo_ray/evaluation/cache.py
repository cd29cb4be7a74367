"""A cache of held-out results per prompt, so nothing already evaluated is scored again.

A study's `--resume`, `pmpo evaluate` after a suite's `--evaluate`, and a re-run report all
evaluate prompts that were evaluated before. An entry holds one prompt's PromptEvaluation
(evaluation/prompt_scores.py), keyed by everything the result depends on: the held-out
examples (their fingerprint), the prompt text, the role it is given in, the evaluation
settings that change the result, the loss it is measured by, and the scorer (backend, model,
dtype, and the rest of its engine config). Change any of them and the key changes.

Entries are JSON files written atomically (a temporary file renamed into place), so a killed
run leaves whole entries or none. An entry that cannot be read back is named on stderr,
evaluated again and replaced.

Where: `$PMPO_RAY_CACHE/evaluations`, by default `~/.cache/pmpo-ray/evaluations`;
`PMPO_RAY_CACHE=off` turns the cache off. It lives on the driver's machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from pmpo_ray.evaluation.prompt_scores import PromptEvaluation

CACHE_ENV = "PMPO_RAY_CACHE"
OFF = "off"
# Bumped when PromptEvaluation or the key's meaning changes: older entries are then missed.
ENTRY_VERSION = 1
_ENTRY = TypeAdapter(PromptEvaluation)


@dataclass(frozen=True)
class EvaluationCache:
    """Held-out results on disk; `folder` None is no cache (every lookup misses)."""

    folder: Path | None

    @classmethod
    def from_environment(cls) -> EvaluationCache:
        root = os.environ.get(CACHE_ENV, "")
        if root == OFF:
            return cls(None)
        base = Path(root).expanduser() if root else Path.home() / ".cache" / "pmpo-ray"
        return cls(base / "evaluations")

    def get(self, key: str) -> PromptEvaluation | None:
        """The entry under `key`, or None (missing; or unreadable, which is said once)."""
        if self.folder is None:
            return None
        path = self.path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as error:
            print(
                f"evaluation cache: cannot read {path} ({error}); evaluating again", file=sys.stderr
            )
            return None
        try:
            entry = json.loads(text)
            if entry.get("version") != ENTRY_VERSION:
                return None
            return _ENTRY.validate_python(entry["evaluation"])
        except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as error:
            reason = str(error).splitlines()[0][:200]
            print(
                f"evaluation cache: {path} is corrupt ({reason}); evaluating again and "
                "replacing it",
                file=sys.stderr,
            )
            return None

    def put(self, key: str, evaluation: PromptEvaluation) -> None:
        """Write the entry atomically; a cache that cannot be written is skipped, not fatal."""
        if self.folder is None:
            return
        path = self.path(key)
        entry = {"version": ENTRY_VERSION, "evaluation": asdict(evaluation)}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "w", encoding="utf-8", dir=path.parent, prefix=".tmp-", delete=False
            ) as handle:
                json.dump(entry, handle)
            os.replace(handle.name, path)
        except OSError as error:
            print(f"evaluation cache: cannot write {path} ({error}); not cached", file=sys.stderr)

    def path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / key[:2] / f"{key}.json"


def cache_key(
    *, examples_fingerprint: str, prompt: str, role: str, settings: dict, scorer: dict
) -> str:
    """The entry's name: a hash of what the result depends on (see the module docstring)."""
    basis = {
        "version": ENTRY_VERSION,
        "examples": examples_fingerprint,
        "prompt": prompt,
        "role": role,
        "settings": settings,
        "scorer": scorer,
    }
    text = json.dumps(basis, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
