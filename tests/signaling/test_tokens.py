"""TokenIssuer and the claim rules, without a server."""

from __future__ import annotations

import time

import jwt
import pytest
from roomwire.signaling.protocol import MAX_JSON_DEPTH, Grants, ProtocolError
from roomwire.signaling.tokens import MIN_SECRET_BYTES, TokenIssuer

from tests.conftest import SECRET
from tests.signaling.test_hardening import nested

issuer = TokenIssuer(SECRET)


def test_a_minted_token_verifies_to_its_claims() -> None:
    token = issuer.mint(identity="ann", room="r1", name="Ann", metadata={"role": "host"}, grants=Grants(data=False))
    claims = issuer.verify(token)
    assert (claims.identity, claims.room, claims.name, claims.metadata) == ("ann", "r1", "Ann", {"role": "host"})
    assert claims.grants == Grants(publish=True, subscribe=True, data=False, admin=False)
    assert claims.expires_at - time.time() == pytest.approx(3600, abs=5)


@pytest.mark.parametrize(
    ("payload", "secret", "message"),
    [
        ({"sub": "ann", "room": "r1", "exp": 1}, SECRET, "expired"),
        ({"sub": "ann", "room": "r1", "exp": 2**31, "nbf": 2**31 - 1}, SECRET, "not valid yet"),
        ({"sub": "ann", "room": "r1", "exp": 2**31}, "another-secret-of-at-least-32-bytes!", "signature"),
        ({"sub": "ann", "room": "r1"}, SECRET, "exp"),
        ({"sub": "", "room": "r1", "exp": 2**31}, SECRET, "sub"),
        ({"sub": "ann", "exp": 2**31}, SECRET, "room is required"),
        ({"sub": "ann", "room": "no spaces", "exp": 2**31}, SECRET, "room must match"),
        ({"sub": "ann", "room": "r1", "exp": 2**31, "grants": {"root": True}}, SECRET, "unknown grants"),
        ({"sub": "ann", "room": "r1", "exp": 2**31, "grants": {"data": "yes"}}, SECRET, "boolean"),
        ({"sub": "ann", "room": "r1", "exp": 2**31, "metadata": [1]}, SECRET, "metadata"),
        ({"sub": "ann", "room": "r1", "exp": 2**31, "metadata": {"x": "y" * 5000}}, SECRET, "limit"),
        ({"sub": "ann", "room": "r1", "exp": 2**31, "metadata": {"d": nested(MAX_JSON_DEPTH)}}, SECRET, "nests"),
        ({"sub": "ann", "room": "r1", "exp": 2**31, "name": "n" * 129}, SECRET, "name"),
        ({"sub": "server", "room": "r1", "exp": 2**31}, SECRET, "reserved"),
    ],
)
def test_a_token_that_breaks_a_rule_is_unauthorized(payload: dict, secret: str, message: str) -> None:
    token = jwt.encode(payload, secret, algorithm="HS256")
    with pytest.raises(ProtocolError) as refused:
        issuer.verify(token)
    assert refused.value.code == "unauthorized" and message in refused.value.message


def test_nothing_is_minted_that_would_be_refused() -> None:
    for claims in (
        {"identity": "server", "room": "r1"},
        {"identity": "ann", "room": None},
        {"identity": "ann", "room": "r1", "ttl": 0},
        {"identity": "ann", "room": "r1", "name": "bad\ud800"},
    ):
        with pytest.raises(ProtocolError) as refused:
            issuer.mint(**claims)
        assert refused.value.code == "bad_request"
    admin = issuer.verify(issuer.mint(identity="ops", room=None, grants=Grants(admin=True)))
    assert admin.room is None and admin.grants.admin


def test_room_access_rules() -> None:
    member = issuer.verify(issuer.mint(identity="ann", room="r1"))
    member.require_room("r1")
    with pytest.raises(ProtocolError, match="another room"):
        member.require_room("r2")
    issuer.verify(issuer.mint(identity="ops", room=None, grants=Grants(admin=True))).require_room("r2")


def test_the_secret_is_long_and_never_shown() -> None:
    with pytest.raises(ValueError, match=str(MIN_SECRET_BYTES)):
        TokenIssuer("short")
    assert SECRET not in repr(issuer) and SECRET not in str(vars(issuer).keys())
