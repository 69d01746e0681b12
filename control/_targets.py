"""Which URLs webhooks may be sent to: server-side request forgery protection.

A webhook URL is chosen by whoever holds a ``webhooks:manage`` key, and control POSTs to it
from inside the deployment's network. So a target must be ``http``/``https`` and every address
its host resolves to must be public, unless it lies in a network the operator allowed
(``PARLEY_WEBHOOK_ALLOWED_NETWORKS``; ``parley up`` allows loopback). The check runs when a
webhook is created or changed, and again before each delivery (a name may resolve elsewhere
later). What is left: a name whose answer changes between that check and the connection
(DNS rebinding within one delivery) is not pinned.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: How long a name may take to resolve.
RESOLVE_TIMEOUT_SECONDS = 5.0


class TargetRefused(ValueError):
    """A URL webhooks may not be sent to; the message says why."""


def parse_networks(networks: Sequence[str]) -> tuple[IPNetwork, ...]:
    """CIDRs such as ``127.0.0.0/8``; raises ValueError naming a malformed one."""
    parsed = []
    for network in networks:
        try:
            parsed.append(ipaddress.ip_network(network, strict=False))
        except ValueError as exc:
            raise ValueError(f"{network!r} is not a network (for example 127.0.0.0/8 or ::1/128): {exc}") from exc
    return tuple(parsed)


def _is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _is_public(address.ipv4_mapped)
    return address.is_global and not address.is_multicast


async def _addresses(host: str) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout=RESOLVE_TIMEOUT_SECONDS
        )
    except (OSError, TimeoutError) as exc:
        raise TargetRefused(f"host {host!r} does not resolve: {exc or 'timed out'}") from exc
    # An IPv6 answer may carry a zone (fe80::1%eth0): the part before it is the address.
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


async def check_target(url: str, allowed: Sequence[IPNetwork]) -> None:
    """Raises TargetRefused unless webhooks may be POSTed to ``url``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"malformed URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise TargetRefused(f"the URL must be http:// or https://, not {parts.scheme or 'schemeless'}")
    if not parts.hostname:
        raise TargetRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("the URL must not carry credentials; deliveries are authenticated by their signature")
    if port == 0:
        raise TargetRefused("the URL's port must not be 0")
    for address in await _addresses(parts.hostname):
        if _is_public(address) or any(address in network for network in allowed):
            continue
        raise TargetRefused(
            f"host {parts.hostname!r} is {address}, a loopback, private or reserved address; "
            "the server allows such targets only in the networks of PARLEY_WEBHOOK_ALLOWED_NETWORKS"
        )
