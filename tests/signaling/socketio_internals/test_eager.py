"""signaling/socketio_internals/eager.py: a coroutine runs at once up to its first wait and is
finished in a task only if it waits (results, cancellation and timeouts as in any task); through
a real server, an eager event whose handler waits is still answered, and an eager event never
overtakes the same socket's earlier events."""

from __future__ import annotations

import asyncio

import pytest
from roomwire.signaling import MemoryBackend
from roomwire.signaling.backend import Membership
from roomwire.signaling.socketio_internals import eager

from tests.raw_socket import RawSocket
from tests.signaling.socketio_internals.test_frames import HandWrittenSocket, connect_and_join
from tests.sio_client import joined_client


async def test_work_that_does_not_wait_is_done_at_once_without_a_task() -> None:
    seen: list[object] = []

    async def work() -> None:
        seen.append(asyncio.current_task())

    tasks = asyncio.all_tasks()
    assert eager.start(work()) is None
    assert seen == [asyncio.current_task()]  # run by its caller, before start() returned
    assert asyncio.all_tasks() == tasks


async def test_work_that_waits_is_finished_by_a_task_that_sees_what_it_waits_on() -> None:
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()
    seen: list[object] = []

    async def work() -> str:
        seen.append(await first)
        async with asyncio.timeout(5):  # a timeout needs a task: it has one after its first wait
            seen.append(await second)
        await asyncio.sleep(0)  # a bare yield to the loop
        return "done"

    rest = eager.start(work())
    assert rest is not None and seen == []
    task = asyncio.ensure_future(rest)
    first.set_result(1)
    await asyncio.sleep(0.01)
    assert seen == [1] and not task.done()
    second.set_result(2)
    assert await task == "done"
    assert seen == [1, 2]


async def test_a_cancelled_task_cancels_the_work_it_finishes() -> None:
    never = asyncio.get_running_loop().create_future()
    cleaned: list[str] = []

    async def work() -> None:
        try:
            await never
        finally:
            cleaned.append("finally")

    task = asyncio.ensure_future(eager.start(work()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally"]


async def test_an_error_raised_before_the_first_wait_is_raised_at_once_and_after_it_by_the_task() -> None:
    async def fails_at_once() -> None:
        raise LookupError("at once")

    with pytest.raises(LookupError, match="at once"):
        eager.start(fails_at_once())

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise LookupError("later")

    with pytest.raises(LookupError, match="later"):
        await eager.start(fails_later())


async def test_an_eager_event_whose_handler_waits_is_answered(running) -> None:
    sio = running.server.sio
    assert "signal" in sio.eager_events  # one node: the signal handler never waits

    async def slow(sid: str, *args: object) -> dict[str, object]:
        await asyncio.sleep(0.05)
        async with asyncio.timeout(5):
            await asyncio.sleep(0)
        return {"ok": True, "args": list(args)}

    sio.on("slow", slow)
    sio.eager_events.add("slow")
    raw = await RawSocket.open(running.url, running.token("r1", "raw"))
    await raw.connected()
    assert await raw.call("slow", {"n": 1}) == {"ok": True, "args": [{"n": 1}]}
    assert await raw.call("slow", {"n": 2}, 3) == {"ok": True, "args": [{"n": 2}, 3]}
    await raw.close()


async def test_an_eager_signal_sent_with_the_join_before_it_is_handled_after_the_join(running) -> None:
    peer, _ = await joined_client(running.url, running.token("r1", "peer"))
    socket = await HandWrittenSocket.open(running.url)
    # the connect, the join (a task) and a signal (eager) in one write: the signal waits for the join
    socket.send(*connect_and_join(running.token("r1", "hasty")), '422["signal",{"to":"peer","type":"offer","data":1}]')
    assert (await socket.next_text()).startswith("0{")
    assert (await socket.next_text()).startswith("40{")
    assert (await socket.ack(1))["ok"]
    assert (await socket.ack(2)) == {"ok": True}
    signal = await peer.wait_for("signal")
    assert signal == {"from": "hasty", "type": "offer", "data": 1}
    await socket.close()
    await peer.close()


class TimedBackend(MemoryBackend):
    """An embedder's backend whose lookups wait under a timeout, as one over the network would."""

    answers_at_once = False

    async def membership(self, room: str, identity: str) -> Membership | None:
        async with asyncio.timeout(5):  # refuses to start outside a task
            await asyncio.sleep(0)
            return await super().membership(room, identity)


async def test_signals_are_eager_only_with_a_backend_that_answers_at_once(make_server) -> None:
    running = await make_server(backend=TimedBackend())
    assert running.server.sio.eager_events == set()
    alice, _ = await joined_client(running.url, running.token("r1", "alice"))
    bob, _ = await joined_client(running.url, running.token("r1", "bob"))
    assert await alice.call("signal", {"to": "bob", "type": "offer", "data": 1}) == {"ok": True}
    assert await bob.wait_for("signal") == {"from": "alice", "type": "offer", "data": 1}
    await alice.close()
    await bob.close()
