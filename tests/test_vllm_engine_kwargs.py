"""vLLM `engine_kwargs`: checked against vLLM's EngineArgs before anything starts, then passed
to the engine as they are."""

import time

import pytest
from pydantic import ValidationError

from pmpo_ray.engines import client as client_module
from pmpo_ray.engines.registry import PoolConfig
from pmpo_ray.engines.vllm_engine import VllmConfig
from pmpo_ray.engines.vllm_engine_args import check_engine_kwargs
from pmpo_ray.requests import score_requests
from pmpo_ray.tasks.example import Example


def test_unknown_key_is_named_with_its_close_matches():
    with pytest.raises(ValueError) as error:
        check_engine_kwargs({"max_num_seq": 8})
    message = str(error.value)
    assert message.startswith("engine_kwargs: unknown vLLM engine argument 'max_num_seq'")
    assert "(close: max_num_seqs" in message
    assert "\n" not in message


def test_unknown_key_without_close_matches_says_only_that():
    with pytest.raises(ValueError, match=r"argument 'zzz_qqq'$"):
        check_engine_kwargs({"zzz_qqq": 1})


@pytest.mark.parametrize(
    ("key", "ours"),
    [
        ("dtype", "engine.dtype"),
        ("block_size", "engine.block_size"),
        ("enable_prefix_caching", "engine.prefix_sharing"),
        ("max_num_batched_tokens", "engine.max_batch_tokens"),
        ("model", "engine.model.name"),
    ],
)
def test_a_key_we_set_ourselves_is_refused_naming_our_setting(key, ours):
    with pytest.raises(ValueError) as error:
        check_engine_kwargs({key: None})
    assert str(error.value) == (
        f"engine_kwargs: {key!r} is pmpo-ray's own setting; set {ours} instead"
    )


def test_every_setting_we_map_is_a_vllm_engine_argument():
    from pmpo_ray.engines.vllm_engine_args import OUR_SETTINGS, engine_arg_names

    assert set(OUR_SETTINGS) <= engine_arg_names()


def test_known_keys_pass():
    check_engine_kwargs({"max_num_seqs": 7, "revision": "main", "trust_remote_code": False})
    check_engine_kwargs({})


def test_a_pool_with_engine_kwargs_validates_without_checking_them():
    # Validating a config must not import vLLM; the check runs in preflight.
    pool = PoolConfig.model_validate(
        {"engine": {"backend": "vllm", "engine_kwargs": {"max_num_seqs": 7, "bogus": 1}}}
    )
    assert pool.engine.engine_kwargs == {"max_num_seqs": 7, "bogus": 1}
    assert VllmConfig().engine_kwargs == {}


def test_the_hf_backend_refuses_engine_kwargs():
    with pytest.raises(ValidationError, match="engine_kwargs"):
        PoolConfig.model_validate({"engine": {"backend": "hf", "engine_kwargs": {"a": 1}}})


def test_preflight_checks_engine_kwargs():
    VllmConfig(engine_kwargs={"max_num_seqs": 7}).preflight("scorer")
    with pytest.raises(ValueError, match="set engine.dtype instead"):
        VllmConfig(engine_kwargs={"dtype": "float16"}).preflight("scorer")


def test_open_engines_refuses_an_unknown_key_before_any_engine_starts(monkeypatch):
    def no_engine(*args, **kwargs):
        raise AssertionError("an engine was built before engine_kwargs were checked")

    monkeypatch.setattr(client_module, "build_engine", no_engine)
    pool = PoolConfig(engine=VllmConfig(engine_kwargs={"max_num_seq": 7}))
    started = time.monotonic()
    with (
        pytest.raises(ValueError, match="unknown vLLM engine argument 'max_num_seq'"),
        client_module.open_engines(pool),
    ):
        pass
    # vLLM's import only (a few seconds), no model load.
    assert time.monotonic() - started < 60


@pytest.mark.engine
def test_engine_kwargs_reach_vllm_and_the_engine_still_scores():
    from pmpo_ray.engines.registry import build_engine

    engine = build_engine(VllmConfig(engine_kwargs={"max_num_seqs": 7}))
    try:
        assert engine.llm.llm_engine.vllm_config.scheduler_config.max_num_seqs == 7
        table = score_requests(
            [("p", "Answer with Yes or No.")],
            [Example("0", "Is the sky blue?", "Yes")],
            task_id="t",
            kind="adhoc",
            role="system",
        )
        scored = engine.score(table)
        assert scored.column("n_tokens").to_pylist()[0] > 0
        assert scored.column("logprob_sum").to_pylist()[0] < 0
    finally:
        engine.close()


def test_a_key_that_spans_more_gpus_is_refused():
    from pmpo_ray.engines.vllm_engine_args import check_engine_kwargs

    with pytest.raises(ValueError, match="'pipeline_parallel_size' would make each replica span"):
        check_engine_kwargs({"pipeline_parallel_size": 2})
