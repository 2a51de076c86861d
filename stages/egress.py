"""Where outbound requests may go, and which credentials may travel with them.

A theme editor chooses feed URLs, provider ``base_url``s and webhook URLs. Without a guard that is
a way into the machine's own network (the cloud metadata service at 169.254.169.254, a database on
localhost, the office LAN) and a way to collect the operator's keys. So:

* **Addresses.** Every connection goes through ``GuardedBackend``: the host name is resolved once,
  every address it resolves to is checked, and the socket is opened to the checked address (the
  name is kept for the Host header, TLS SNI and certificate check, since httpcore hands it to the
  TLS layer itself). A DNS answer that changes between check and connect (rebinding) cannot reach
  a refused address. Refused: loopback, private (RFC 1918, unique-local fc00::/7), link-local
  (169.254/16, fe80::/10, the metadata addresses), CGNAT, multicast, unspecified, reserved and
  documentation ranges - anything that is not a global unicast address - including the same
  addresses spelled as IPv4-mapped/compatible IPv6, 6to4, NAT64 or Teredo, and any decimal, octal
  or hex spelling (the resolver normalises those before the check). Redirects are connections too,
  so every hop is checked. ``TRENDREEL_FETCH_ALLOW`` (host names or CIDRs, comma-separated) lets
  chosen ones through: a feed server on the LAN, or the tests' local servers.
* **Credentials.** A key from the environment (``OPENAI_API_KEY``, ``PEXELS_API_KEY``...) is the
  operator's, not the theme's: ``Secret.bind`` lets it go only to its provider's default host, the
  host of a base URL that also came from the environment, or hosts listed in
  ``TRENDREEL_PROVIDER_HOSTS``. A provider that would send it elsewhere is refused before any
  request, with a message naming the setting; and the transport refuses any request that carries
  such a key (in a header or a small body) to another host - a redirect, a resumable-upload
  session URI - so it cannot leak on the way either. A key typed into the theme itself goes where
  the theme says (whoever changes the host must re-enter it: the admin form's job).

Refusals are ``OutboundRefused``, a permanent error: retrying will not make the address public.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from stages import metering
from stages.base import PermanentStageError

ALLOW_SETTING = "TRENDREEL_FETCH_ALLOW"
PROVIDER_HOSTS_SETTING = "TRENDREEL_PROVIDER_HOSTS"
# The metadata services of the big clouds: named in messages, refused like the rest of their ranges.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
_HOST = re.compile(r"^(?=.{1,253}$)(\*\.)?[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]


class OutboundRefused(PermanentStageError):
    """A request the guard would not send. Not an httpx error, so nothing mistakes it for a network blip."""


# -- addresses -----------------------------------------------------------------------------------
def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, compatible, NAT64, 6to4, Teredo client)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    packed = int(ip)
    if ip in _NAT64 or (packed >> 32 == 0 and packed > 1):  # 64:ff9b::a.b.c.d, ::a.b.c.d (deprecated)
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return None


def refused_reason(ip: Address) -> str | None:
    """Why ``ip`` may not be reached, or None for a global unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            reason = refused_reason(inner)
            if reason:
                return f"{reason} (as {ip})"
        if ip.scope_id:
            return "a scoped (link-local) address"
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if any(ip in net for net in _PRIVATE if net.version == ip.version):
        return "a private address"
    if ip.is_reserved or not ip.is_global:
        return "not a public address"
    return None


@dataclass(frozen=True)
class AllowList:
    """``TRENDREEL_FETCH_ALLOW`` / ``TRENDREEL_PROVIDER_HOSTS``: host names (``*.example.org`` for
    subdomains) and CIDRs."""

    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        hosts, suffixes, networks = set(), [], []
        for raw in entries:
            entry = raw.strip().lower().strip("[]")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if not _HOST.match(entry):
                raise ValueError(f"{raw!r} is neither a host name nor an IP address/CIDR")
            if entry.startswith("*."):
                suffixes.append(entry[1:].rstrip("."))
            else:
                hosts.add(entry.rstrip("."))
        return cls(frozenset(hosts), tuple(suffixes), tuple(networks))

    def allows_host(self, host: str) -> bool:
        host = normal_host(host)
        if host in self.hosts or any(host.endswith(s) for s in self.suffixes):
            return True
        try:
            return self.allows_ip(ipaddress.ip_address(host))
        except ValueError:
            return False

    def allows_ip(self, ip: Address) -> bool:
        return any(ip in net for net in self.networks if net.version == ip.version)


@lru_cache(maxsize=16)
def _parsed(entries: tuple[str, ...]) -> AllowList:
    return AllowList.parse(entries)


def _setting(name: str) -> AllowList:
    from django.conf import settings

    raw = getattr(settings, name, ()) or ()
    if isinstance(raw, str):
        raw = raw.split(",")
    return _parsed(tuple(raw))


def fetch_allow() -> AllowList:
    return _setting(ALLOW_SETTING)


def provider_hosts() -> AllowList:
    return _setting(PROVIDER_HOSTS_SETTING)


def normal_host(host: str) -> str:
    return host.strip().lower().strip("[]").rstrip(".")


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order (literals, decimal, octal and
    hex spellings included: ``getaddrinfo`` turns "2130706433" into 127.0.0.1)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_host(host: str, port: int, *, resolver: Resolver = resolve) -> list[str]:
    """The addresses of ``host`` a connection may use; ``OutboundRefused`` if any is refused.

    One refused address refuses the host: a name that answers both a public and a private address
    is a rebinding trick, not a mirror.
    """
    host = normal_host(host)
    allowed = fetch_allow()
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
    if not addresses:
        raise httpcore.ConnectError(f"{host} resolves to no address")
    if allowed.allows_host(host):
        return list(addresses)
    for text in addresses:
        ip = ipaddress.ip_address(text)
        reason = refused_reason(ip)
        if reason and not allowed.allows_ip(ip):
            shown = host if host == text else f"{host} ({text})"
            raise OutboundRefused(
                f"refused to connect to {shown}: {reason}",
                hint=f"feeds, providers and webhooks may only reach public addresses; list the host or its "
                f"network in {ALLOW_SETTING} (comma-separated host names or CIDRs) to allow it",
            )
    return list(addresses)


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, connecting only to addresses ``check_host`` passed."""

    def __init__(self, resolver: Resolver = resolve) -> None:
        self._inner = httpcore.SyncBackend()
        self._resolver = resolver

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = check_host(host, port, resolver=self._resolver)
        error: Exception | None = None
        for address in addresses:  # the checked addresses themselves: a second lookup could differ
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None):
        raise OutboundRefused(f"refused to connect to the unix socket {path}")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


# -- credentials ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Secret:
    """A credential and where it may be sent. ``hosts`` is None for a theme's own key (it goes
    where the theme says); an environment key carries the hosts it is bound to."""

    value: str
    setting: str  # where it came from, for messages ("OPENAI_API_KEY")
    hosts: frozenset[str] | None = None
    extra: AllowList = field(default_factory=AllowList)

    def allows(self, url: str | httpx.URL) -> bool:
        if self.hosts is None:
            return True
        host = normal_host(httpx.URL(str(url)).host if not isinstance(url, httpx.URL) else url.host)
        return host in self.hosts or self.extra.allows_host(host)

    def refusal(self, url: str | httpx.URL, provider: str) -> OutboundRefused:
        host = httpx.URL(str(url)).host if not isinstance(url, httpx.URL) else url.host
        bound = ", ".join(sorted(self.hosts or ())) or "no host"
        return OutboundRefused(
            f"{provider}: {self.setting} from the environment is only sent to {bound}, not to {host}",
            hint=f"add {host} to {PROVIDER_HOSTS_SETTING} if that server should get the operator's key, "
            f"or give the theme its own key for it",
        )


def bind(value: str, setting: str, *urls: str | None) -> Secret:
    """An environment credential bound to the hosts of ``urls`` (its provider's default endpoints and
    any base URL that came from the environment too) and to ``TRENDREEL_PROVIDER_HOSTS``."""
    hosts = frozenset(normal_host(urlsplit(u).hostname or "") for u in urls if u) - {""}
    return Secret(value=value, setting=setting, hosts=hosts, extra=provider_hosts())


def carried(request: httpx.Request, secrets: Iterable[Secret | None]) -> list[Secret]:
    """The bound secrets a request carries in a header or a small body."""
    body = b""
    if isinstance(request.stream, httpx.ByteStream):
        content = request.read()
        body = content if len(content) <= 64 * 1024 else b""
    found = []
    for secret in secrets:
        if secret is None or secret.hosts is None or not secret.value:
            continue
        needle = secret.value
        if any(needle in v for v in request.headers.values()) or (body and needle.encode() in body):
            found.append(secret)
    return found


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport on ``GuardedBackend``, refusing requests that carry a bound secret to a host
    it is not bound to (redirect hops included: httpx sends each through here)."""

    def __init__(
        self,
        *,
        secrets: Sequence[Secret | None] = (),
        provider: str = "",
        resolver: Resolver = resolve,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # httpx 0.28 builds its connection pool in __init__ without a way to name the network
        # backend; the pool is new (no connections yet), so swapping its backend here is safe.
        self._pool._network_backend = GuardedBackend(resolver)
        self.secrets = secrets  # live: the provider may add one (a refreshed token) later
        self.provider = provider or "request"
        self.usage = metering.current()  # the attempt this client was made in counts its requests

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for secret in carried(request, self.secrets):
            if not secret.allows(request.url):
                raise secret.refusal(request.url, self.provider)
        metering.count_request(self.usage, self.provider, request)
        return super().handle_request(request)
