"""RTCConfiguration for the SFU's peer connections, built from the JSON-style ICE server list
that the server also hands to clients (`[{urls, username?, credential?}]`)."""

from __future__ import annotations

from typing import Any

from aiortc import RTCConfiguration, RTCIceServer


def ice_server(entry: dict[str, Any]) -> RTCIceServer:
    urls = entry.get("urls")
    if not (isinstance(urls, str) or (isinstance(urls, list) and all(isinstance(u, str) for u in urls))):
        raise ValueError("an ICE server needs `urls`: a string or a list of strings")
    return RTCIceServer(urls=urls, username=entry.get("username"), credential=entry.get("credential"))


def rtc_configuration(ice_servers: list[dict[str, Any]]) -> RTCConfiguration:
    """Always explicit: aiortc's default (a public STUN server) is unreachable in closed networks."""
    return RTCConfiguration(iceServers=[ice_server(entry) for entry in ice_servers])
