"""A suite that cannot run fails before any replica starts and before anything is written."""

import pytest

from pmpo_ray.api import optimize_suite
from tests.failures import replace_open_engines

TINY = "pipelines/suites/tiny.yaml"


def test_a_row_over_the_scorer_window_is_named_before_engines_start(tmp_path, monkeypatch):
    def no_engines(*args, **kwargs):
        raise AssertionError("engines were opened before the rows were checked")

    replace_open_engines(monkeypatch, no_engines)
    out = tmp_path / "run"
    with pytest.raises(ValueError) as error:
        optimize_suite(TINY, out=out, overrides={"scorer.engine.model.max_model_len": 40})
    message = str(error.value)
    assert "\n" not in message
    assert "over the model's window of 40" in message and "navigate" in message
    assert not out.exists()  # no empty run folder left behind
