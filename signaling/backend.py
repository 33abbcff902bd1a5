"""The state shared between nodes: presence logs, the participant registry and the routing of
commands between nodes.

`StateBackend` is the one interface, with two implementations: `MemoryBackend` (one process,
the embedded default) and `RedisBackend` (many nodes). Nothing here assumes the state is
local: every call is async and returns copies, never live objects.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .protocol import Participant, PresenceEvent

# (room, identity, owner) of a participant whose node died
LostHandler = Callable[[str, str, str], Awaitable[Any]]
# Hands one presence event of a followed room to this node's sockets.
Deliver = Callable[[PresenceEvent], Awaitable[None]]
# A command for one node: a JSON object with an "op" (docs/architecture.md, "Between nodes").
Command = dict[str, Any]
# How a node carries out the commands sent to it; what it returns answers a request.
CommandHandler = Callable[[Command], Awaitable[Any]]


@dataclass(frozen=True)
class Retention:
    """How much history each room's presence log keeps for recovery."""

    max_events: int = 1000
    max_age: float = 600.0


@dataclass
class Recovery:
    """The answer to "what happened since (epoch, offset)?" - events, or a fresh snapshot.

    Exactly one of `events` and `participants` is set: recovery is all-or-nothing.
    """

    epoch: str
    offset: int
    events: list[PresenceEvent] | None = None
    participants: list[Participant] | None = None

    @property
    def is_snapshot(self) -> bool:
        return self.events is None


@dataclass
class RoomInfo:
    name: str
    participants: int
    created_at: int  # ms epoch


@dataclass
class Membership:
    participant: Participant
    owner: str  # the connection that holds the identity: a Socket.IO sid or `watch:...`
    node: str  # the node that holds that connection


@dataclass
class JoinResult:
    event: PresenceEvent
    snapshot: Recovery  # the room as it stands right after the join
    replaced: Membership | None = None  # the connection that held the identity before

    @property
    def replaced_owner(self) -> str | None:
        return self.replaced.owner if self.replaced is not None else None


class StateBackend(ABC):
    """Presence logs and participants of every room, and the routing of commands between nodes,
    behind one async interface. A backend that cannot reach its shared state raises
    ProtocolError("unavailable")."""

    # True when other nodes change the same rooms. Emits relayed between nodes could then
    # arrive out of log order, so each node delivers presence to its own sockets from the log.
    shared = False
    # True when every call returns without waiting for anything (state in this process): an event
    # whose handler only calls the backend may then run in the pass that read it (SocketAPI).
    answers_at_once = False
    # This node's name in `Membership.node` and as the target of `send`/`request`.
    node_id = "local"

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Start background work (sweepers, heartbeats)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop background work and release connections."""

    def on_node_lost(self, handler: LostHandler) -> None:  # noqa: B027 - optional hook
        """Have `handler` make the participants of a node that died leave.

        Only a backend shared by several nodes can lose one; in one process nothing calls it.
        """

    def on_taken_over(self, handler: LostHandler) -> None:  # noqa: B027 - optional hook
        """Have `handler` drop a connection of this node whose identity another connection took
        over while this node could not reach the shared state (only a shared backend)."""

    async def follow(self, room: str, deliver: Deliver, wanted: Callable[[], bool]) -> None:
        """Make sure `deliver` gets every event appended to `room` from now on, in log order,
        once each, while `wanted()` holds (checked after each read). Only a shared backend can.
        """
        raise NotImplementedError("only a shared backend follows rooms")

    @abstractmethod
    async def join(self, room: str, participant: Participant, owner: str) -> JoinResult:
        """Add a participant, or replace the connection holding its identity (an `update`)."""

    @abstractmethod
    async def leave(self, room: str, identity: str, owner: str | None = None) -> PresenceEvent | None:
        """Remove a participant; with `owner`, only if that connection still holds it."""

    @abstractmethod
    async def update(
        self, room: str, identity: str, owner: str | None, changes: dict[str, Any], kind: str = "update"
    ) -> PresenceEvent | None:
        """Change a participant's fields (`kind` "track" for track changes)."""

    @abstractmethod
    async def membership(self, room: str, identity: str) -> Membership | None:
        """The participant and the connection that holds it, if present."""

    @abstractmethod
    async def snapshot(self, room: str) -> Recovery | None:
        """The room's participants with the log position they correspond to; None if unknown."""

    @abstractmethod
    async def recover(self, room: str, epoch: str | None, offset: int | None, wait: float = 0.0) -> Recovery:
        """Events after (epoch, offset) if all are still held, else a snapshot.

        With `wait` > 0 and nothing newer yet, hold up to `wait` seconds for the next event.
        An unknown room gets a (new, empty) log so that watchers can wait for the first join.
        """

    @abstractmethod
    async def rooms(self) -> list[RoomInfo]:
        """Rooms that have participants."""

    @abstractmethod
    async def nodes(self, room: str) -> set[str]:
        """The nodes that hold participants of the room."""

    # -- between nodes -----------------------------------------------------------------------

    @abstractmethod
    def serve(self, handler: CommandHandler) -> None:
        """Carry out the commands sent to this node with `handler`."""

    @abstractmethod
    async def send(self, node: str, command: Command) -> None:
        """Hand `command` to `node`; returns once it is stored for that node (not yet done)."""

    @abstractmethod
    async def request(self, node: str, command: Command, timeout: float) -> Any:
        """Have `node` carry out `command` and return its answer. A ProtocolError raised there
        is raised here; no answer within `timeout` is ProtocolError("unavailable")."""

    # -- where each room's media lives (one node per room) -----------------------------------

    async def media_node(self, room: str, place: bool) -> str | None:
        """The node holding the room's media; with `place`, the least loaded node takes it when
        none (alive) does. One process holds every room's media itself."""
        return self.node_id

    async def media_nodes(self, rooms: list[str]) -> dict[str, str | None]:
        """`media_node(room, place=False)` for many rooms at once."""
        return dict.fromkeys(rooms, self.node_id)

    async def keep_media(self, rooms: set[str], load: float) -> set[str]:
        """This node still holds these rooms' media (and is this loaded, 0 = idle): refresh its
        claims. Returns the rooms another node has taken meanwhile."""
        return set()

    async def release_media(self, room: str) -> None:  # noqa: B027 - optional hook
        """This node holds the room's media no more."""

    def trusted_for(self) -> float:
        """Seconds this node's view of the shared state has been reliable (connected, with quick
        round trips): a node acts on what it no longer sees only after a while of that."""
        return float("inf")
