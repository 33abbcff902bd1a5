"""A coroutine run at once, up to its first wait, and on in a task only if it waits.

Python 3.12's eager tasks do this for every task; on 3.11 each event's handler got a task of
its own, run in the next pass of the event loop (7 % of the instructions of a relayed
signal, docs/benchmarks.md). Until it first waits, the coroutine runs outside any task:
`asyncio.current_task()` is None and `asyncio.timeout()` refuses to start, so only work that
starts no timeout before it waits may be run this way (an event registered as eager).
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any


def start(work: Coroutine[Any, Any, Any]) -> Coroutine[Any, Any, Any] | None:
    """Run `work` up to its first wait: None if it finished, else a coroutine that finishes it,
    for a task. An exception from the first step is raised here."""
    try:
        waiting_on = work.send(None)
    except StopIteration:
        return None
    return _finish(work, waiting_on)


async def _finish(work: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    return await _Resumed(work, waiting_on)


class _Resumed:
    """Awaits what `work` was waiting on when it was set aside, then drives it on: its task sees
    each future `work` yields, and sends results and throws cancellations into `work`."""

    __slots__ = ("waiting_on", "work")

    def __init__(self, work: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self.work, self.waiting_on = work, waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        work, value = self.work, self.waiting_on
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                work.close()
                raise
            except BaseException as exc:  # a cancellation: handed to `work`
                step, arg = work.throw, exc
            else:
                step, arg = work.send, sent
            try:
                value = step(arg)
            except StopIteration as done:
                return done.value
