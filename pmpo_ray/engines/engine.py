"""The engine contract: every member of a backend's engine that something outside it uses.

A backend is one engine class (this protocol) plus its config class (an `EngineSettings`
subclass with `backend: Literal["name"]`), registered by one line in `registry.BACKENDS`.
Subclassing `prepared_calls.PreparedEngine` gives everything here except what only the backend
knows: `config_class`, loading (`__init__`: `tokenizer`, `model_path`), `token_scores` and
`generate_samples` (see PreparedEngine), and `close`/`engine_died` where it holds more than
memory of this process.

What the same callers read of the settings (`EngineSettings`, pmpo_ray/config.py), each with a
default there: `backend` (registry: which engine class), `model` (window; where the weights
are, for pool planning), `dtype` and `max_batch_tokens` (memory estimate, batches), `seed`,
`prefix_sharing`, `loads_model` (replicas, memory estimate, row checks before the replicas
start), `gpus_per_engine()` and `process_env(on_gpu)` (a replica's Ray resources and
environment), `cpu_kv_cache_gib(model_folder)` (memory estimate), `prefills` (jobs.py: can
the rewriter continue a prefill, or does it get the long meta-prompt?) and `preflight(role)`
(client.open_engines: the backend's own checks before anything starts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa

    from pmpo_ray.config import EngineSettings, PromptFormat
    from pmpo_ray.engines.chat import TemplateFrames
    from pmpo_ray.engines.generation import PreparedGeneration
    from pmpo_ray.engines.scoring import PreparedScoring


@runtime_checkable
class Engine(Protocol):
    """One loaded engine of a backend, in a replica actor or in the driver's process."""

    config_class: ClassVar[type[EngineSettings]]
    """registry.py: validates a config naming this backend (its own fields only)."""

    config: EngineSettings
    """The settings it was built with: prepare reads the window and prefix_sharing, run
    reads max_batch_tokens."""

    prompt_format: PromptFormat
    """prepare_score: which side of a too-long context is cut (truncate_left)."""

    tokenizer: Any
    """prepare_*: renders chat templates and tokenizes (batch_tokenization.py); count_tokens."""

    template_frames: TemplateFrames | None
    """prepare_*: rendered template frames kept across batches (None: render every row)."""

    model_path: str
    """EngineReplica.ready: which model a replica loaded (logged by ReplicaPool.start; the
    dispatcher's restart probe waits for it)."""

    def __init__(self, config: EngineSettings, prompt_format: PromptFormat | None = None):
        """registry.build_engine: load the engine (heavy libraries imported here only)."""

    def prepare_score(
        self,
        requests: pa.Table,
        with_token_logprobs: bool = False,
        *,
        share_prefixes: bool | None = None,
    ) -> PreparedScoring:
        """EngineReplica.score: a scoring batch's CPU work (checks, rendering, tokenizing,
        every error naming a row), done while the engine runs another batch."""

    def prepare_generate(self, requests: pa.Table) -> PreparedGeneration:
        """EngineReplica.generate: the same for a generation batch."""

    def run(self, prepared: PreparedScoring | PreparedGeneration) -> pa.Table:
        """EngineReplica: the engine's work on a prepared batch, one at a time."""

    def score(
        self,
        requests: pa.Table,
        with_token_logprobs: bool = False,
        *,
        share_prefixes: bool | None = None,
    ) -> pa.Table:
        """InProcessClient.score: run(prepare_score(...))."""

    def generate(self, requests: pa.Table) -> pa.Table:
        """InProcessClient.generate: run(prepare_generate(...))."""

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Both clients' count_tokens (the rewrite guard's length check): each text's
        length in this model's tokens."""

    def engine_died(self, error: BaseException) -> bool:
        """EngineReplica: True when `error` means the engine is gone while the process lives
        (vLLM's engine core); the replica then ends its process so that Ray restarts it."""

    def close(self) -> None:
        """InProcessClient.close, EngineReplica.close: release what the engine holds outside
        this process's memory (vLLM's engine-core process)."""
