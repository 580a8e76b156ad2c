"""The client's address: from X-Forwarded-For only when the direct peer is a trusted proxy.

Read right to left, X-Forwarded-For is the chain of hops that reached us; every hop
a trusted proxy added is skipped, and the first address not in the trusted list is
the client. Anything a client wrote further left is ignored, so an untrusted peer
cannot choose its own address (and with it its rate-limit bucket).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from bastion.types import ASGIApp, Receive, Scope, Send

Network = IPv4Network | IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``["10.0.0.0/8", "127.0.0.1"]`` -> networks; raises ValueError on a bad entry."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def _address(value: str) -> IPv4Address | IPv6Address | None:
    candidate = value.strip().strip('"')
    if candidate.startswith("[") and "]" in candidate:  # "[2001:db8::1]:4711"
        candidate = candidate[1 : candidate.index("]")]
    elif candidate.count(":") == 1:  # "203.0.113.7:4711"
        candidate = candidate.split(":")[0]
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        return None


def resolve_client(peer: str, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    """The client address for a connection from ``peer`` carrying ``forwarded_for``."""

    def is_trusted(address: IPv4Address | IPv6Address | None) -> bool:
        return address is not None and any(address in network for network in trusted)

    if not trusted or not forwarded_for or not is_trusted(_address(peer)):
        return peer
    hops = [hop for hop in forwarded_for.split(",") if hop.strip()]
    client = peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break  # a malformed hop: trust nothing beyond it
        client = str(address)
        if not is_trusted(address):
            break
    return client


class ClientIpMiddleware:
    """Replaces ``scope["client"]`` with the resolved client; keeps the peer in state.

    Args:
        trusted_proxies: Networks whose X-Forwarded-For is believed; empty believes none.
    """

    def __init__(self, app: ASGIApp, *, trusted_proxies: Iterable[str]) -> None:
        self.app = app
        self.trusted = parse_networks(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.trusted and scope["type"] in ("http", "websocket") and scope.get("client"):
            peer_host = scope["client"][0]
            forwarded = [
                v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-forwarded-for"
            ]
            client = resolve_client(peer_host, ",".join(forwarded) or None, self.trusted)
            scope.setdefault("state", {})["peer"] = peer_host
            if client != peer_host:
                scope["client"] = (client, 0)
        await self.app(scope, receive, send)
