"""Where a webhook may go. Checked when the URL is given (PUT /v1/calls/{uuid}) and again before
every delivery, because DNS can change in between (rebinding).

A target must be https (http only when allowed), name a host on the allow-list (empty list =
webhooks off), and every address the host resolves to must be public: loopback, private,
link-local (169.254.169.254 is the cloud metadata service), unique-local, multicast, reserved
and unspecified addresses are refused unless they fall in a network the operator allowed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


@dataclass(frozen=True)
class WebhookPolicy:
    allowed_hosts: tuple[str, ...]
    allowed_networks: tuple[IPNetwork, ...]
    allow_http: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookPolicy:
        try:
            networks = tuple(ipaddress.ip_network(n, strict=False) for n in settings.webhook_allowed_networks)
        except ValueError as exc:
            raise VoiceIdError(ErrorCode.CONFIGURATION_ERROR, f"VOICEID_WEBHOOK_ALLOWED_NETWORKS: {exc}") from exc
        hosts = tuple(h.strip().lower().strip("[]") for h in settings.webhook_allowed_hosts)
        return cls(hosts, networks, settings.webhook_allow_http)

    @property
    def enabled(self) -> bool:
        return bool(self.allowed_hosts)

    def host_allowed(self, host: str) -> bool:
        for pattern in self.allowed_hosts:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                    return True
            elif host == pattern:
                return True
        return False

    def address_allowed(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback, whatever its spelling
        if any(address in network for network in self.allowed_networks):
            return True
        return address.is_global and not address.is_multicast


def refuse(message: str) -> VoiceIdError:
    return VoiceIdError(ErrorCode.WEBHOOK_NOT_ALLOWED, message)


def check_target(url: str, policy: WebhookPolicy, resolver: Resolver = resolve) -> list[str]:
    """The addresses `url` may be delivered to; raises WEBHOOK_NOT_ALLOWED otherwise."""
    if not policy.enabled:
        raise refuse("webhooks are off on this service (VOICEID_WEBHOOK_ALLOWED_HOSTS is empty)")
    parts = urlsplit(url)
    schemes: Sequence[str] = ("https", "http") if policy.allow_http else ("https",)
    if parts.scheme not in schemes:
        raise refuse(f"webhook URLs must use {' or '.join(schemes)}")
    if parts.username or parts.password:
        raise refuse("webhook URLs must not carry credentials")
    host = (parts.hostname or "").lower()
    if not host:
        raise refuse("the webhook URL has no host")
    if not policy.host_allowed(host):
        raise refuse(f"host {host!r} is not on the webhook allow-list")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise refuse("the webhook URL has an invalid port") from exc
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise refuse(f"host {host!r} does not resolve") from exc
    if not addresses:
        raise refuse(f"host {host!r} does not resolve")
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone index
        if not policy.address_allowed(address):
            raise refuse(
                f"host {host!r} resolves to {address}, a loopback, private, link-local or reserved address "
                "(allow it explicitly with VOICEID_WEBHOOK_ALLOWED_NETWORKS)"
            )
    return addresses
