"""Stand-ins at protocol boundaries, for unit tests of pure logic only."""

from __future__ import annotations

import os
import threading
import time
from functools import partial

import numpy as np

from pmpo_ray.engines.replicas import EngineReplica
from pmpo_ray.engines.scoring import TokenScores
from pmpo_ray.engines.tokenization import EncodedRequest


def token_value(token_id: int, position: int) -> float:
    """A made-up but deterministic log-probability for a token at a position."""
    return -((token_id * 31 + position * 7) % 97) / 10.0


class FakeTokenScorer:
    """Implements the TokenScorer callable; records the batches it saw."""

    def __init__(self, drop_last: bool = False):
        self.batches: list[list[EncodedRequest]] = []
        self.drop_last = drop_last

    def __call__(self, batch):
        self.batches.append(list(batch))
        results = []
        for request in batch:
            positions = range(request.n_context, len(request.token_ids))
            logprobs = np.array([token_value(request.token_ids[p], p) for p in positions])
            results.append(TokenScores(logprobs, logprobs > -1.0, len(request.token_ids)))
        return results[:-1] if self.drop_last else results


def fake_context(row: dict) -> str:
    """What a fake engine "reads": the chat parts joined without any model's template."""
    return f"{row['prompt']}\n{row['input']}\n{row.get('prefill') or ''}"


class FakeEngine:
    """An engine client over Arrow tables, scripted, for unit tests of the optimizer loop.

    Scoring: every continuation word costs 2 nats, or 1 nat when the prompt or input contains
    one of `good_words`, so prompts holding those words win. Generation:
    `respond(context, seed, index)` returns each sample's text, where context is
    `fake_context(row)`. Token counts are word counts: no tokenizer is loaded.
    """

    def __init__(self, respond, good_words=("carefully",), finish_reason="stop"):
        self.respond = respond
        self.finish_reason = finish_reason
        self.good_words = good_words
        self.score_calls: list[int] = []
        self.generate_calls: list[int] = []
        self.requests: list[dict] = []  # every generation request seen

    def count_tokens(self, texts):
        return [len(text.split()) for text in texts]

    def score(self, requests, with_token_logprobs=False):
        import pyarrow as pa

        self.score_calls.append(requests.num_rows)
        rows = requests.to_pylist()
        logprob_sum, n_tokens, n_input = [], [], []
        for row in rows:
            words = len(row["continuation"].split())
            context = fake_context(row)
            cost = 1.0 if any(w in context for w in self.good_words) else 2.0
            logprob_sum.append(-cost * words)
            n_tokens.append(words)
            n_input.append(len(context.split()) + words)
        return (
            requests.append_column("logprob_sum", pa.array(logprob_sum, pa.float64()))
            .append_column("n_tokens", pa.array(n_tokens, pa.int64()))
            .append_column("is_greedy", pa.array([False] * len(rows)))
            .append_column("n_input_tokens", pa.array(n_input, pa.int64()))
            .append_column("n_computed_tokens", pa.array(n_input, pa.int64()))
        )

    def generate(self, requests, pool="rewriter"):
        import pyarrow as pa

        from pmpo_ray.requests import GENERATE_RESULT_SCHEMA

        self.generate_calls.append(requests.num_rows)
        out = []
        for row in requests.to_pylist():
            self.requests.append(row)
            for index in range(row["n"]):
                text = self.respond(fake_context(row), row["seed"], index)
                out.append(
                    {
                        "request_id": row["request_id"],
                        "sample_index": index,
                        "text": text,
                        "n_tokens": len(text.split()),
                        "finish_reason": self.finish_reason,
                        "n_prompt_tokens": len(fake_context(row).split()),
                    }
                )
        return pa.Table.from_pylist(out, schema=GENERATE_RESULT_SCHEMA)

    def stats(self):
        return {}

    def close(self):
        pass


def scripted_rewrites(context, seed, index):
    """Segment into one sentence; rewrite to a prompt naming the seed and sample."""
    if "<mask>" in context and "<prompt>" not in context:
        return "<mask>Think.</mask>"
    return f"Analysis. <prompt>Read carefully {seed % 1000}-{index}.</prompt>"


class ReplicaScript:
    """The engine contract (engines/engine.py) over a FakeReplica's scripted calls: preparing
    a call keeps its requests, running it answers with the replica's `scripted_*` method."""

    model_path = "fake"

    def __init__(self, replica: "FakeReplica"):
        self.replica = replica

    def prepare_score(self, requests, with_token_logprobs=False, *, share_prefixes=None):
        return partial(self.replica.scripted_score, requests)

    def prepare_generate(self, requests):
        return partial(self.replica.scripted_generate, requests)

    def run(self, prepared):
        return prepared()

    def count_tokens(self, texts):
        return self.replica.script.count_tokens(texts)

    def engine_died(self, error):
        return False

    def close(self):
        pass


class FakeReplica(EngineReplica):
    """An engine replica holding a FakeEngine script, with an optional delay per call: the
    real replica's actor methods (typed calls, failover, work counting) around a scripted
    engine. Subclasses change `scripted_score` / `scripted_generate`."""

    def __init__(self, engine=None, prompt_format=None, cpu_threads=1, delay_seconds=0.0):
        self.script = FakeEngine(scripted_rewrites)
        self.engine = ReplicaScript(self)
        self.delay_seconds = delay_seconds
        self.engine_lock, self.prepare_lock = threading.Lock(), threading.Lock()

    def ready(self):
        return f"fake@{os.getpid()}"

    def node_id(self):
        import ray

        return ray.get_runtime_context().get_node_id()

    def scripted_score(self, requests):
        time.sleep(self.delay_seconds)
        return self.script.score(requests)

    def scripted_generate(self, requests):
        time.sleep(self.delay_seconds)
        return self.script.generate(requests)

    def close(self):
        pass


def rewriter_says(context, seed, index):
    return "written by the rewriter"


class RewriterReplica(FakeReplica):
    """A FakeReplica of another "model": every generation says it was the rewriter."""

    def __init__(self, engine=None, prompt_format=None, cpu_threads=1):
        super().__init__(engine, prompt_format, cpu_threads)
        self.script = FakeEngine(rewriter_says)


class StalledFakeReplica(FakeReplica):
    """A FakeReplica taking 3 s per call: a call long enough to do something beside it."""

    def __init__(self, engine=None, prompt_format=None, cpu_threads=1):
        super().__init__(engine, prompt_format, cpu_threads, delay_seconds=3.0)


class QuickFakeReplica(FakeReplica):
    """A FakeReplica taking 0.2 s per call: jobs last long enough to overlap."""

    def __init__(self, engine=None, prompt_format=None, cpu_threads=1):
        super().__init__(engine, prompt_format, cpu_threads, delay_seconds=0.2)


class TimedClient:
    """Wraps an engine client, recording each call's (stage, start, end, rows); passes the
    client's `concurrent_jobs` on, and can add a delay per call to a client without one."""

    def __init__(self, client, delay_seconds=0.0, concurrent_jobs=None):
        self.client = client
        self.delay_seconds = delay_seconds
        self.concurrent_jobs = (
            getattr(client, "concurrent_jobs", False)
            if concurrent_jobs is None
            else concurrent_jobs
        )
        self.calls: list[tuple[str, float, float, int]] = []

    def generate(self, requests, pool="rewriter"):
        return self._timed("generate", lambda table: self.client.generate(table, pool), requests)

    def score(self, requests, with_token_logprobs=False):
        return self._timed("score", self.client.score, requests)

    def count_tokens(self, texts):
        return self.client.count_tokens(texts)

    def overlapped(self) -> bool:
        """Whether a generation call and a scoring call were ever in flight together."""
        generations = [(s, e) for stage, s, e, _ in self.calls if stage == "generate"]
        scorings = [(s, e) for stage, s, e, _ in self.calls if stage == "score"]
        return any(gs < se and ss < ge for gs, ge in generations for ss, se in scorings)

    def _timed(self, stage, call, requests):
        started = time.perf_counter()
        time.sleep(self.delay_seconds)
        result = call(requests)
        self.calls.append((stage, started, time.perf_counter(), requests.num_rows))
        return result


class SlowFakeReplica(FakeReplica):
    """A FakeReplica taking a second per call: long enough to kill one in the middle of a call."""

    def __init__(self, engine=None, prompt_format=None, cpu_threads=1):
        super().__init__(engine, prompt_format, cpu_threads, delay_seconds=1.0)


class FailingFakeReplica(FakeReplica):
    """Scoring raises what the request's task id names: a user error or an engine bug."""

    def scripted_score(self, requests):
        task_id = requests.column("task_id")[0].as_py()
        if task_id == "too-long":
            raise ValueError("task too-long, example 3: 2100 tokens, over the model's window")
        raise RuntimeError("engine bug: shapes do not match")


class PoisonedFakeReplica(FakeReplica):
    """Dies (its process ends, as in an out-of-memory kill) on the batch holding request 0."""

    def scripted_score(self, requests):
        if 0 in requests.column("request_id").to_pylist():
            os._exit(1)
        return super().scripted_score(requests)


class PlacedFakeReplica(FakeReplica):
    """A FakeReplica with a fixed latency per call that also reports where Ray placed it and
    which requests it served, for placement and fan-out tests on a multi-node cluster."""

    latency_seconds = 0.02

    def __init__(self, engine=None, prompt_format=None, cpu_threads=1):
        super().__init__(engine, prompt_format, cpu_threads, delay_seconds=self.latency_seconds)
        self.served_ids: list[int] = []

    def placement(self) -> dict:
        import ray

        context = ray.get_runtime_context()
        return {
            "node_id": context.get_node_id(),
            "gpu_ids": [str(gpu) for gpu in ray.get_gpu_ids()],
            "placement_group_id": context.get_placement_group_id(),
        }

    def tensor_parallel_workers(self) -> list[dict]:
        """Start one GPU task in each bundle of this actor's placement group, as vLLM's Ray
        executor starts its workers, and report where each ran."""
        import ray
        from ray.util.placement_group import get_current_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        group = get_current_placement_group()
        if group is None:
            raise RuntimeError("this replica runs outside a placement group")
        worker = ray.remote(num_cpus=0, num_gpus=1)(gpu_worker_placement)
        refs = [
            worker.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(group, bundle_index)
            ).remote()
            for bundle_index in range(group.bundle_count)
        ]
        return ray.get(refs)

    def scripted_score(self, requests):
        self.served_ids.extend(requests.column("request_id").to_pylist())
        return super().scripted_score(requests)

    def served(self) -> list[int]:
        return list(self.served_ids)


def gpu_worker_placement() -> dict:
    import ray

    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "gpu_ids": [str(gpu) for gpu in ray.get_gpu_ids()],
    }
