"""The bot's view of the room across a restart of the presence log (a new epoch)."""

from __future__ import annotations

from roomwire.media.bot.roster import Roster


def event(kind: str, identity: str, epoch: str, offset: int) -> dict:
    return {"type": kind, "participant": {"identity": identity}, "epoch": epoch, "offset": offset, "ts": 0}


def test_a_new_epoch_replaying_the_room_reports_only_who_really_came():
    roster = Roster()
    ack = {"room": "r", "self": {"identity": "bot"}, "epoch": "e1", "offset": 3}
    ack["participants"] = [{"identity": "bot"}, {"identity": "ann"}, {"identity": "bob"}]
    assert roster.apply_snapshot(ack) == ([{"identity": "ann"}, {"identity": "bob"}], [])

    # Redis came back empty: the nodes register again, and the new log starts with the room
    assert roster.apply_event(event("join", "ann", "e2", 1)) is None  # she never left
    assert roster.apply_event(event("join", "bot", "e2", 2)) is None
    assert roster.apply_event(event("join", "bob", "e2", 3)) is None
    assert roster.apply_event(event("join", "cid", "e2", 4)) == "join"  # new
    assert set(roster.others) == {"ann", "bob", "cid"}

    # later in the new epoch, the ones from before come and go as anybody
    assert roster.apply_event(event("leave", "ann", "e2", 5)) == "leave"
    assert roster.apply_event(event("join", "ann", "e2", 6)) == "join"


def test_one_who_was_here_and_left_before_its_replay_is_reported_when_it_comes_back():
    roster = Roster()
    ack = {"room": "r", "self": {"identity": "bot"}, "epoch": "e1", "offset": 2}
    ack["participants"] = [{"identity": "bot"}, {"identity": "ann"}]
    roster.apply_snapshot(ack)
    assert roster.apply_event(event("join", "bot", "e2", 1)) is None
    assert roster.apply_event(event("leave", "ann", "e2", 2)) is None  # not in the new log yet
    assert roster.apply_event(event("join", "ann", "e2", 3)) == "join"


def test_a_snapshot_reports_joins_and_leaves_in_the_order_the_room_lists_them():
    roster = Roster()
    names = [f"p{i:02d}" for i in range(40)]
    ack = {"room": "r", "self": {"identity": "bot"}, "epoch": "e1", "offset": 40}
    ack["participants"] = [{"identity": n} for n in names]
    joined, left = roster.apply_snapshot(ack)
    assert [p["identity"] for p in joined] == names and left == []

    ack["participants"] = [{"identity": "p00"}, {"identity": "p39"}]
    joined, left = roster.apply_snapshot(ack)
    assert joined == [] and [p["identity"] for p in left] == names[1:39]
