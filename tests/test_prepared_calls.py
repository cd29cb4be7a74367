"""Each backend's call splits into `prepare_score`/`prepare_generate` (CPU: checks, rendering,
tokenizing; every error naming a row) and `run` (the engine), and `score`/`generate` are
exactly `run(prepare_*(...))`; every backend meets the engine contract (engines/engine.py)."""

import time

import pyarrow as pa
import pytest

from pmpo_ray.config import EngineSettings
from pmpo_ray.engines.engine import Engine
from pmpo_ray.engines.generation import PreparedGeneration
from pmpo_ray.engines.prepared_calls import PreparedEngine
from pmpo_ray.engines.registry import BACKENDS, build_engine
from pmpo_ray.engines.scoring import PreparedScoring
from pmpo_ray.engines.simulated_engine import SimulatedConfig
from pmpo_ray.engines.tokenization import RequestTooLongError
from pmpo_ray.requests import generate_requests, score_requests
from pmpo_ray.tasks.example import Example
from tests.conftest import bbh_examples


def scoring_table() -> pa.Table:
    prompts = [("a", "Answer with the option."), ("b", "")]
    return score_requests(
        prompts, bbh_examples("hyperbaton", 4), task_id="t", kind="candidate", role="system"
    )


def generation_table() -> pa.Table:
    messages = [("Be brief.", e.input) for e in bbh_examples("navigate", 3)]
    return generate_requests(messages, task_id="t", max_tokens=4, prefill="The answer")


def simulated(seconds_per_call: float = 0.0):
    return build_engine(
        SimulatedConfig(
            seconds_per_call=seconds_per_call,
            seconds_per_scored_token=0,
            seconds_per_generated_token=0,
        )
    )


def check_split_is_the_call(engine) -> None:
    table = scoring_table()
    prepared = engine.prepare_score(table, True, share_prefixes=False)
    assert isinstance(prepared, PreparedScoring)
    assert engine.run(prepared).equals(engine.score(table, True, share_prefixes=False))
    # (with sharing, a second vLLM call reads the first one's cache: fewer computed tokens)
    assert engine.prepare_score(table).share_prefixes == engine.config.prefix_sharing
    generation = generation_table()
    prepared = engine.prepare_generate(generation)
    assert isinstance(prepared, PreparedGeneration)
    assert engine.run(prepared).equals(engine.generate(generation))


def test_simulated_prepare_then_run_is_the_call():
    check_split_is_the_call(simulated())


def test_prepare_raises_row_errors_and_takes_no_engine_time():
    engine = simulated(seconds_per_call=0.5)
    table = score_requests(
        [("p", "x")],
        [Example("ok", "Hi", "yes"), Example("long", "word " * 5000, "yes")],
        task_id="nav",
        kind="adhoc",
        role="system",
    )
    started = time.perf_counter()
    with pytest.raises(RequestTooLongError, match=r"request 1 \(task 'nav', candidate 'p'"):
        engine.prepare_score(table)
    prepared = engine.prepare_score(table.slice(0, 1))
    assert time.perf_counter() - started < 0.5  # the modeled engine time is run's
    started = time.perf_counter()
    engine.run(prepared)
    assert time.perf_counter() - started >= 0.5


def test_every_backend_meets_the_engine_contract():
    """Every protocol member is there: on a built engine (data members are set by loading),
    and, for methods, on each registered class (no model loaded here)."""
    assert isinstance(simulated(), Engine)
    methods = [name for name, member in vars(Engine).items() if callable(member)]
    methods = [name for name in methods if not name.startswith("_")]
    assert {"prepare_score", "run", "count_tokens", "engine_died", "close"} <= set(methods)
    for name, engine_class in BACKENDS.items():
        assert issubclass(engine_class.config_class, EngineSettings), name
        missing = [method for method in methods if not callable(getattr(engine_class, method))]
        assert not missing, (name, missing)
        assert engine_class.config_class.model_fields["backend"].default == name


def test_a_backend_without_its_own_model_work_says_so():
    class Incomplete(PreparedEngine):
        config_class = SimulatedConfig

        def __init__(self, config):
            super().__init__(config)
            self.tokenizer = simulated().tokenizer

    engine = Incomplete(SimulatedConfig())
    with pytest.raises(NotImplementedError):
        engine.score(scoring_table())
    with pytest.raises(NotImplementedError):
        engine.generate(generation_table())
    assert engine.engine_died(RuntimeError("any")) is False


@pytest.mark.engine
@pytest.mark.parametrize("backend", ["hf", "vllm"])
def test_real_backends_prepare_then_run_is_the_call(request, backend):
    check_split_is_the_call(request.getfixturevalue(f"{backend}_engine"))
