"""The README's Python API example runs as written, on the built-in model."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_readme_notebook_example_runs(capsys):
    [example] = [block for block in python_blocks() if "scorer=HfConfig()" in block]
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert len(result.history) == 1
    assert result.best.loss <= result.initial.loss
    assert result.work.forward_passes > 0 and result.work.tokens_generated > 0
    assert f"{result.initial.loss:.3f} -> {result.best.loss:.3f}" in capsys.readouterr().out


def test_readme_names_only_public_api():
    """Every `pmpo_ray.X` and `from pmpo_ray import X` in the README's Python exists."""
    import pmpo_ray

    for block in python_blocks():
        for names in re.findall(r"from pmpo_ray import (.+)", block):
            for name in names.split(","):
                assert hasattr(pmpo_ray, name.strip()), name
        for name in re.findall(r"pmpo_ray\.(\w+)\(", block):
            assert hasattr(pmpo_ray, name), name
