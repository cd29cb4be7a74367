"""Which replica of a pool takes the next batch, which replicas are alive, and what work they
did — one small async actor per pool.

A replica whose process dies (a crash, a killed engine, a preempted node) is taken out of
rotation at once, and watched until Ray has restarted it (its engine reloads: ~35 s on CPU) or
has given up on it. Work is summed here per call that returned, not inside the replicas: a
restarted replica starts from zero, and a batch lost with a dead replica is answered by
another one and must count once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from enum import StrEnum

from pmpo_ray.errors import first_line

REASON_CHARS = 200  # of a replica's failure, as kept in the pool's health


class Method(StrEnum):
    """A replica call's name where it must be data: the per-method work summed here (what
    batching sizes batches by, and stats' `by_method`), job names and error messages. The
    calls themselves are typed actor methods (replicas.EngineReplica)."""

    SCORE = "score"
    GENERATE = "generate"
    COUNT_TOKENS = "count_tokens"  # no engine work: never summed


@dataclass
class ReplicaWork:
    """Work one replica did: what the busy fraction of a pool is computed from."""

    calls: int = 0  # batches (a replica call is one batch of a job)
    rows: int = 0
    tokens: int = 0
    busy_seconds: float = 0.0  # inside the engine
    # CPU the replica spent outside the engine on these calls (rendering, tokenizing, checks),
    # overlapped with another batch's engine work when two are in flight
    prep_cpu_seconds: float = 0.0

    def record(self, started: float, rows: int, tokens: int) -> None:
        """One call that began at `started` (perf_counter) and just returned."""
        self.calls += 1
        self.rows += rows
        self.tokens += tokens
        self.busy_seconds += time.perf_counter() - started

    def as_dict(self) -> dict:
        return asdict(self)

    def add(self, call: ReplicaWork) -> None:
        self.calls += call.calls
        self.rows += call.rows
        self.tokens += call.tokens
        self.busy_seconds += call.busy_seconds
        self.prep_cpu_seconds += call.prep_cpu_seconds


class ReplicaDispatcher:
    """Lends replica indices, least busy first, so concurrent batches spread over replicas and
    a replica stuck with long rows gets no more until the others catch up; skips replicas that
    are down, and waits (up to `restart_timeout_s`) when all are restarting."""

    def __init__(
        self,
        actors: list,
        restart_timeout_s: float = 600.0,
        poll_seconds: float = 1.0,
        node_ids: list[str | None] | None = None,
    ):
        self.actors = actors
        # Where each replica runs: a call to a replica whose node left the cluster can wait
        # for a restart that never comes, so callers watch the node (None: not watched).
        self.node_ids = list(node_ids or [None] * len(actors))
        self.restart_timeout_s = restart_timeout_s
        self.poll_seconds = poll_seconds
        self.in_flight = [0] * len(actors)
        self.served = [0] * len(actors)
        self.work = [ReplicaWork() for _ in actors]
        # Per Method value ("score", "generate"): what batching reads to size batches by seconds.
        self.work_by_method: dict[str, ReplicaWork] = {}
        self.failures = 0  # calls lost to a dying replica (each was sent again elsewhere)
        # Per job, the first error a replica raised in it, as (type, message, where): Ray
        # Data passes only the text of a task's error to the driver, not the error. Keyed by
        # job because a generation job and a scoring job may share the pool at once.
        self.errors: dict[str, tuple[str, str, str]] = {}
        self.down: dict[int, str] = {}  # index -> why, while restarting
        self.gone: dict[int, str] = {}  # index -> why, for good
        self._watchers: set[asyncio.Task] = set()
        self._changed: asyncio.Event | None = None  # made inside the actor's event loop

    async def acquire(self) -> tuple[int, str | None] | None:
        """A live replica's index and node; None when none is left. While every replica is
        restarting it waits: each watcher settles its replica within `restart_timeout_s`."""
        while True:
            live = self.live_indices()
            if live:
                index = min(live, key=lambda i: (self.in_flight[i], self.served[i]))
                self.in_flight[index] += 1
                self.served[index] += 1
                return index, self.node_ids[index]
            if not self.down:
                return None
            await self._wait_for_change()

    def release(self, index: int, work: dict | None = None, method: str = "") -> None:
        """The batch lent with `index` returned; `work` is what it cost (None: it failed, or
        was no engine work); `method`: a Method."""
        self.in_flight[index] -= 1
        if work is not None:
            self.work[index].add(ReplicaWork(**work))
            # keyed by the plain name: stats leave this actor as JSON-ready dicts
            self.work_by_method.setdefault(str(method), ReplicaWork()).add(ReplicaWork(**work))

    def batching_inputs(self, method: str) -> tuple[int, float | None]:
        """What sizing a job's batches needs, in one call: live replicas, and the engine
        seconds per row of `method` (a Method) so far in this pool (None before any)."""
        work = self.work_by_method.get(str(method))
        per_row = work.busy_seconds / work.rows if work is not None and work.rows else None
        return len(self.live_indices()), per_row

    def report_failure(self, index: int, reason: str) -> None:
        """A call to replica `index` failed because its process died: out of rotation until
        it answers again."""
        self.in_flight[index] = max(0, self.in_flight[index] - 1)
        self.failures += 1
        if index in self.down or index in self.gone:
            return
        self.down[index] = reason
        watcher = asyncio.get_running_loop().create_task(self._watch(index))
        self._watchers.add(watcher)  # keep a reference: the loop holds tasks weakly
        watcher.add_done_callback(self._watchers.discard)

    def record_error(self, job: str, kind: str, message: str, where: str) -> None:
        self.errors.setdefault(job, (kind, message, where))

    def take_error(self, job: str) -> tuple[str, str, str] | None:
        """The first error recorded for `job` (and forget it)."""
        return self.errors.pop(job, None)

    def live_indices(self) -> list[int]:
        return [i for i in range(len(self.actors)) if i not in self.down and i not in self.gone]

    def health(self) -> dict:
        """Replicas in the pool, how many take work now, why the others do not, and how many
        calls were lost to dying replicas (and sent again)."""
        return {
            "replicas": len(self.actors),
            "live": len(self.live_indices()),
            "failed_calls": self.failures,
            "restarting": dict(self.down),
            "gone": dict(self.gone),
        }

    def work_done(self) -> list[dict]:
        return [work.as_dict() for work in self.work]

    def work_by_method_done(self) -> dict[str, dict]:
        """The pool's work summed per method ("score", "generate")."""
        return {method: work.as_dict() for method, work in self.work_by_method.items()}

    def served_counts(self) -> list[int]:
        return list(self.served)

    def in_flight_counts(self) -> list[int]:
        return list(self.in_flight)

    async def _watch(self, index: int) -> None:
        """Poll the replica until its restart finished (back in rotation) or Ray gave up on it,
        or the restart time-out passed (gone)."""
        from ray.exceptions import ActorDiedError, RayActorError

        deadline = time.monotonic() + self.restart_timeout_s
        while time.monotonic() < deadline:
            try:
                # A replica waiting for a node to restart on does not fail the call: it waits.
                probe_s = max(0.1, min(10.0, deadline - time.monotonic()))
                await asyncio.wait_for(self._ready(index), timeout=probe_s)
            except TimeoutError:
                continue
            except ActorDiedError as error:  # no restarts left, or its node is gone for good
                self._settle(index, gone=first_line(error, REASON_CHARS))
                return
            except RayActorError:  # restarting: calls fail fast until the engine is loaded
                await asyncio.sleep(self.poll_seconds)
                continue
            except Exception as error:  # never leave it "restarting" forever
                self._settle(index, gone=first_line(error, REASON_CHARS))
                return
            self._settle(index, gone=None)
            return
        self._settle(index, gone=f"not back after {self.restart_timeout_s:g} s")

    async def _ready(self, index: int) -> None:
        """Answers once the replica is loaded again; notes where it restarted."""
        await self.actors[index].ready.remote()
        if self.node_ids[index] is not None:
            self.node_ids[index] = await self.actors[index].node_id.remote()

    def _settle(self, index: int, gone: str | None) -> None:
        reason = self.down.pop(index)
        if gone is not None:
            self.gone[index] = f"{reason}; {gone}"
        self._event().set()

    async def _wait_for_change(self) -> None:
        event = self._event()
        event.clear()
        await event.wait()

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed
