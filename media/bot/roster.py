"""The room as a bot sees it: itself and everyone else, from the join snapshot and the
`presence` events that follow it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Participant = dict[str, Any]


@dataclass
class Roster:
    room: str = ""
    identity: str = ""
    me: Participant = field(default_factory=dict)
    others: dict[str, Participant] = field(default_factory=dict)  # by identity
    epoch: str = ""
    offset: int = 0
    # who was here when the log restarted: the new epoch's replay of them is no news
    _before: dict[str, Participant] = field(default_factory=dict, repr=False)

    def apply_snapshot(self, ack: dict[str, Any]) -> tuple[list[Participant], list[Participant]]:
        """Take a join ack; returns who joined and who left since the previous snapshot
        (after a reconnect: what happened while the bot was away)."""
        self.room, self.me = ack.get("room", ""), ack.get("self") or {}
        self.identity = self.me.get("identity", "")
        self.epoch, self.offset = ack.get("epoch", ""), ack.get("offset", 0)
        self._before = {}
        before = self.others
        self.others = {
            p["identity"]: p
            for p in ack.get("participants") or []
            if isinstance(p, dict) and p.get("identity") != self.identity
        }
        # in the order the room lists them, so that a bot reports the same room the same way
        joined = [p for i, p in self.others.items() if i not in before]
        left = [p for i, p in before.items() if i not in self.others]
        return joined, left

    def apply_event(self, event: Any) -> str | None:
        """Take a presence event; returns "join" or "leave" when someone else came or went,
        "stale" for an event the snapshot already holds, "resync" when the log restarted
        and its beginning is missed (a new snapshot is needed: rejoin), else None."""
        if not isinstance(event, dict) or not isinstance(event.get("participant"), dict):
            return "stale"
        if self.epoch and event.get("epoch") != self.epoch:
            # the log restarted (a new epoch): what it says from its offset 1 is the whole room
            if event.get("offset") != 1:
                return "resync"
            self._before = self.others
            self.epoch, self.offset, self.others = event["epoch"], 0, {}
        if isinstance(event.get("offset"), int):
            if event["offset"] <= self.offset:
                return "stale"
            self.offset = event["offset"]
        participant, kind = event["participant"], event.get("type")
        identity = participant.get("identity")
        if identity == self.identity:
            if kind != "leave":
                self.me = participant
            return None
        if kind == "leave":
            self._before.pop(identity, None)
            return "leave" if self.others.pop(identity, None) is not None else None
        known = identity in self.others or self._before.pop(identity, None) is not None
        self.others[identity] = participant
        return None if known else "join"
