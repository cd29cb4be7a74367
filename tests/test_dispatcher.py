"""The replica dispatcher lends the least busy live replica, takes dead ones out of rotation
until they answer again, and sums work per call that returned (pure logic, no Ray)."""

import asyncio

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError

from pmpo_ray.engines.dispatcher import ReplicaDispatcher
from pmpo_ray.engines.ray_data_client import check_free_cpu, pool_down_message


class ScriptedActor:
    """Answers `ready.remote()` from a script: "unavailable", "died" or "ready" per probe."""

    def __init__(self, script=("ready",)):
        self.script = list(script)
        self.ready = self
        self.probes = 0

    def remote(self):
        self.probes += 1
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return self._answer(step)

    async def _answer(self, step):
        if step == "unavailable":
            raise ActorUnavailableError("the actor is restarting", None)
        if step == "died":
            raise ActorDiedError()
        return "model"


def run(coroutine):
    return asyncio.run(coroutine)


def test_least_busy_replica_first_then_fewest_served():
    async def scenario():
        dispatcher = ReplicaDispatcher([ScriptedActor() for _ in range(3)])
        assert [(await dispatcher.acquire())[0] for _ in range(3)] == [0, 1, 2]
        dispatcher.release(1)
        assert (await dispatcher.acquire())[0] == 1  # the only idle one
        dispatcher.release(0)
        dispatcher.release(2)
        assert (await dispatcher.acquire())[0] == 0  # idle and tied: fewest served wins (0 and 2)
        assert (await dispatcher.acquire())[0] == 2
        assert dispatcher.served_counts() == [2, 2, 2]

    run(scenario())


def test_a_dead_replica_leaves_rotation_until_it_answers_again():
    async def scenario():
        restarting = ScriptedActor(["unavailable", "unavailable", "ready"])
        dispatcher = ReplicaDispatcher([restarting, ScriptedActor()], poll_seconds=0.01)
        assert (await dispatcher.acquire())[0] == 0
        dispatcher.report_failure(0, "worker died")
        assert dispatcher.health()["restarting"] == {0: "worker died"}
        assert [(await dispatcher.acquire())[0] for _ in range(3)] == [1, 1, 1]  # only 1 is live
        for _ in range(3):
            dispatcher.release(1)
        await asyncio.sleep(0.1)  # the watcher polls until the restarted replica answers
        assert restarting.probes == 3
        assert dispatcher.health() == {
            "replicas": 2,
            "live": 2,
            "failed_calls": 1,
            "restarting": {},
            "gone": {},
        }
        assert (await dispatcher.acquire())[0] == 0

    run(scenario())


def test_when_all_are_restarting_acquire_waits_for_the_first_back():
    async def scenario():
        actor = ScriptedActor(["unavailable"] * 5 + ["ready"])
        dispatcher = ReplicaDispatcher([actor], poll_seconds=0.01)
        await dispatcher.acquire()
        dispatcher.report_failure(0, "killed")
        assert (await dispatcher.acquire())[0] == 0  # waited for the restart instead of failing
        assert actor.probes == 6

    run(scenario())


def test_a_replica_ray_gave_up_on_is_gone_and_an_empty_pool_lends_nothing():
    async def scenario():
        dispatcher = ReplicaDispatcher([ScriptedActor(["died"])], poll_seconds=0.01)
        await dispatcher.acquire()
        dispatcher.report_failure(0, "node removed")
        assert await dispatcher.acquire() is None
        health = dispatcher.health()
        assert health["live"] == 0 and health["gone"][0].startswith("node removed; ")
        message = pool_down_message("scorer", health)
        assert message.startswith("the scorer pool has no live replica left of 1 (replica 0:")

    run(scenario())


def test_a_replica_that_never_comes_back_is_gone_after_the_timeout():
    async def scenario():
        actor = ScriptedActor(["unavailable"])
        dispatcher = ReplicaDispatcher([actor], restart_timeout_s=0.1, poll_seconds=0.01)
        await dispatcher.acquire()
        dispatcher.report_failure(0, "killed")
        assert await dispatcher.acquire() is None
        assert "not back after 0.1 s" in dispatcher.health()["gone"][0]

    run(scenario())


def test_work_counts_returned_calls_only():
    async def scenario():
        dispatcher = ReplicaDispatcher([ScriptedActor(), ScriptedActor()])
        await dispatcher.acquire()
        dispatcher.report_failure(0, "died mid-batch")  # its batch is redone elsewhere
        index, _ = await dispatcher.acquire()
        dispatcher.release(index, {"calls": 1, "rows": 8, "tokens": 80, "busy_seconds": 0.5})
        return dispatcher.work_done()

    work = run(scenario())
    assert [w["rows"] for w in work] == [0, 8]
    assert sum(w["calls"] for w in work) == 1


def test_no_free_cpu_is_refused():
    check_free_cpu(1.0)
    with pytest.raises(ValueError, match="leave 0.5 CPU free"):
        check_free_cpu(0.5)
