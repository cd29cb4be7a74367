"""The one interface the optimizer, evaluation and commands use to reach models, and the one
way to open it.

A client scores and generates over Arrow request tables (requests.py), counts tokens in the
scorer model's tokenizer, reports how busy its engines were, and releases them on close. Two
implementations: `InProcessClient` (engines in this process) and `RayDataClient` (Ray Data
jobs over pools of replica actors). `open_engines` picks one from the configs and closes it
on exit, whatever happens inside.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator, Protocol, Sequence, runtime_checkable

import pyarrow as pa

from pmpo_ray.config import PromptFormat, RayConfig
from pmpo_ray.engines.in_process import InProcessClient
from pmpo_ray.engines.pool_plan import check_pools_fit
from pmpo_ray.engines.ray_data_client import RayDataClient
from pmpo_ray.engines.registry import PoolConfig, build_engine
from pmpo_ray.engines.replicas import ReplicaPool
from pmpo_ray.ray_session import connect_ray

log = logging.getLogger(__name__)


@runtime_checkable
class EngineClient(Protocol):
    def score(self, requests: pa.Table, with_token_logprobs: bool = False) -> pa.Table:
        """SCORE_REQUEST_SCHEMA rows in; the same rows plus logprob_sum, n_tokens, is_greedy,
        n_input_tokens out, in request order."""

    def generate(self, requests: pa.Table, pool: str = "rewriter") -> pa.Table:
        """GENERATE_REQUEST_SCHEMA rows in, GENERATE_RESULT_SCHEMA rows out (n per request).
        `pool` says whose model writes: "rewriter" (rewrites and segmentations; the scorer
        when no rewriter is configured) or "scorer" (held-out answers: the optimized model)."""

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Each text's length in the scorer model's tokens."""

    def stats(self) -> dict[str, dict]:
        """Per pool name ("scorer", "rewriter"): replicas, jobs, batches, calls, rows, tokens,
        busy_seconds (inside engines), prep_cpu_seconds (replica CPU outside them)."""

    def close(self) -> None:
        """Release the engines (and replica actors) this client holds."""


@contextmanager
def open_engines(
    scorer: PoolConfig,
    rewriter: PoolConfig | None = None,
    *,
    prompt_format: PromptFormat | None = None,
    on_ray: bool = False,
    ray: RayConfig | None = None,
) -> Iterator[EngineClient]:
    """A client over engines built from the configs; closed (and a Ray it started, shut down)
    on exit. `rewriter` None or equal to `scorer` means one engine does both (the paper's
    setting) in process; on Ray a configured rewriter always gets its own pool, and each
    config's `replicas` says how many actors start."""
    preflight(scorer, rewriter)
    if not on_ray:
        if rewriter == scorer:
            rewriter = None
        client = _in_process(scorer, rewriter, prompt_format)
        try:
            yield client
        finally:
            client.close()
        return

    started_ray = connect_ray(ray or RayConfig())
    try:
        client = _on_ray(scorer, rewriter, prompt_format, ray or RayConfig())
        try:
            yield client
        finally:
            client.close()
    finally:
        if started_ray:
            import ray as ray_module

            ray_module.shutdown()


def preflight(scorer: PoolConfig, rewriter: PoolConfig | None) -> None:
    """Each engine's own checks before anything starts (EngineSettings.preflight); the scorer
    also generates when there is no rewriter."""
    scorer.engine.preflight("scorer")
    if rewriter is None or rewriter == scorer:
        scorer.engine.preflight("rewriter")
    else:
        rewriter.engine.preflight("rewriter")


def _in_process(scorer: PoolConfig, rewriter: PoolConfig | None, prompt_format):

    scorer_engine = build_engine(scorer.engine, prompt_format)
    if rewriter is None:
        return InProcessClient(scorer_engine)
    try:
        return InProcessClient(scorer_engine, build_engine(rewriter.engine, prompt_format))
    except BaseException:
        scorer_engine.close()
        raise


def _on_ray(scorer: PoolConfig, rewriter: PoolConfig | None, prompt_format, ray: RayConfig):
    """Check that the pools fit the cluster, start the long-lived replica pools, then the
    client that routes jobs to them."""

    wanted = (
        {"scorer": scorer, "rewriter": rewriter} if rewriter is not None else {"scorer": scorer}
    )
    check_pools_fit(wanted, wait_s=ray.wait_for_nodes_s)
    pools = []
    try:
        for config in (scorer, rewriter):
            if config is not None:
                pools.append(
                    ReplicaPool.start(
                        config.engine, config.replicas, prompt_format, reserve_memory=True
                    )
                )
        return RayDataClient(*pools)
    except BaseException:
        for pool in pools:
            pool.shutdown()
        raise
