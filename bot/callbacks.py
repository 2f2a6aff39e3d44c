"""Callbacks to workflows, kept from being turned against the network Signoff runs in.

Whoever may submit a case names its `callback_url`; unchecked, that would let them make
Signoff POST to an admin endpoint on localhost or read the cloud metadata service. So:

* The host is resolved once per delivery (through an injectable resolver) and every
  address of the answer is checked. Loopback, link-local, unspecified, multicast,
  reserved and cloud metadata addresses, also inside IPv4-mapped, NAT64, 6to4 and
  Teredo IPv6 forms, are refused unless `SIGNOFF_CALLBACK_HOSTS` opens them. One
  refused address refuses the delivery: a rebinding attacker writes the whole answer,
  so picking a "good" address from it would be picking theirs.
* The connection goes to an address that was checked. The client's network backend
  connects only to the answer pinned for the request in hand and never resolves again,
  so a second DNS answer between check and connect cannot move the request. The URL
  and the Host header are untouched, so TLS still sends SNI for the host name and
  verifies the certificate against it.
* Redirects are never followed: a 3xx is a failed try, retried like a 5xx (the
  endpoint may be mid-deploy) and dead-lettered after `SIGNOFF_OUTBOX_DEAD_AFTER`.

Only an exact entry of `SIGNOFF_CALLBACK_HOSTS` opens a refused address. A `*.domain`
pattern never does: any record under the domain (a dangling, delegated or wildcard one)
could point at loopback or at the metadata service. An exact entry opens
* the address it writes (`127.0.0.1`, `::1`, `169.254.169.254`), whichever name
  resolves to it;
* for the host name it writes (`hooks.local`), every refused kind but metadata; a
  metadata address is opened only by the address itself, or by a metadata host name
  (`metadata.google.internal`) written exactly.
Private ranges (10/8, 172.16/12, 192.168/16, fc00::/7, 100.64/10) stay allowed:
a self-hosted tool calls back into its own network.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
import orjson

from bot import signing
from bot.config import host_allowed, ip_literal
from bot.protocols import DeliveryFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses the host resolves to, as text
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

METADATA = "a cloud metadata address"
# Where the clouds serve instance metadata and credentials. Most sit in 169.254/16 and
# are refused as link-local anyway; these are named so that an entry opening a host
# name never opens them, and because some are not link-local at all.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        # AWS, GCP, Azure, Oracle, DigitalOcean, OpenStack; AWS's IPv6 endpoint:
        # https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html
        "169.254.169.254",
        "fd00:ec2::254",
        # AWS ECS task metadata and credentials:
        # https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-metadata-endpoint-v2.html
        "169.254.170.2",
        # AWS EKS Pod Identity agent (credentials), IPv4 and IPv6:
        # https://docs.aws.amazon.com/eks/latest/userguide/pod-id-agent-setup.html
        "169.254.170.23",
        "fd00:ec2::23",
        # GCP's metadata server over IPv6, in the otherwise-allowed fc00::/7:
        # https://cloud.google.com/compute/docs/metadata/querying-metadata
        "fd20:ce::254",
        # Alibaba Cloud ECS, in the otherwise-allowed 100.64/10:
        # https://www.alibabacloud.com/help/en/ecs/user-guide/view-instance-metadata
        "100.100.100.200",
        # Azure's WireServer (platform agent, DNS, DHCP), a public-looking address:
        # https://learn.microsoft.com/en-us/azure/virtual-network/what-is-ip-address-168-63-129-16
        "168.63.129.16",
    )
)
# Names of those services, refused by name too (the resolver that answers them is the
# cloud's, and its answer may be an address not listed above).
# GCP: https://cloud.google.com/compute/docs/metadata/querying-metadata (metadata,
# metadata.google.internal, metadata.goog); AWS: instance-data (Amazon DNS).
METADATA_NAMES = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data"}
)

LOOPBACK = "loopback"
REFUSED_NETWORKS: tuple[tuple[str, tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]], ...]
REFUSED_NETWORKS = tuple(
    (kind, tuple(ipaddress.ip_network(n) for n in networks))
    for kind, networks in (
        (LOOPBACK, ("127.0.0.0/8", "::1/128")),
        ("link-local", ("169.254.0.0/16", "fe80::/10")),
        # 0/8 is "this network" (RFC 1122); Linux connects 0.0.0.0 to the local host
        ("unspecified", ("0.0.0.0/8", "::/128")),
        ("multicast", ("224.0.0.0/4", "ff00::/8")),
        # 240/4 and the broadcast address (RFC 1112, RFC 919); fec0::/10 was site-local
        ("reserved", ("240.0.0.0/4", "fec0::/10")),
    )
)
# IPv6 forms that carry an IPv4 address a connection may end up at (RFC 4291 mapped
# and compatible, RFC 2765 translated, RFC 6052 NAT64, RFC 3056 6to4, RFC 4380 Teredo)
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in net for net in (_IPV4_COMPATIBLE, _IPV4_TRANSLATED, _NAT64)):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refused_kind(address: IPAddress) -> str | None:
    """Why a callback may not go to `address` by default, or None when it may."""
    if address in METADATA_ADDRESSES:
        return METADATA
    for kind, networks in REFUSED_NETWORKS:
        if any(address in net for net in networks):
            return kind
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            carried = refused_kind(inner)
            return f"{carried}, inside an IPv6 address" if carried else None
    return None


def _bare(host: str) -> str:
    return host.lower().removesuffix(".")


def _opened(host: str, address: IPAddress, kind: str, patterns: Sequence[str]) -> bool:
    """Whether an exact entry of SIGNOFF_CALLBACK_HOSTS opens `address` for `host`."""
    exact = [p for p in patterns if not p.startswith("*.")]
    if any(ip_literal(p) == address for p in exact):
        return True
    named = _bare(host) in {_bare(p) for p in exact}
    # a metadata kind may be carried inside an IPv6 form: match it by prefix
    return named and (not kind.startswith(METADATA) or _bare(host) in METADATA_NAMES)


def _why_refused(host: str, address: IPAddress, kind: str) -> str:
    return (
        f"callback refused: {host!r} resolves to {address} ({kind}); Signoff calls loopback, "
        "link-local, cloud metadata and other special addresses only when "
        f'SIGNOFF_CALLBACK_HOSTS names that host or address exactly (e.g. ["{address}"])'
    )


def url_problem(url: str, patterns: Sequence[str]) -> str | None:
    """What is wrong with `url` as a callback_url, as far as can be told without DNS:
    a host the allow-list does not name, a refused address written in the URL, or a
    metadata host name. A name's addresses are checked at each delivery."""
    host = (urlsplit(url).hostname or "").lower()
    if not host_allowed(url, patterns):
        return f"callback_url's host {host!r} is not one that SIGNOFF_CALLBACK_HOSTS allows"
    address = ip_literal(host)
    if address is not None:
        kind = refused_kind(address)
        if kind and not _opened(host, address, kind, patterns):
            return (
                f"callback_url's address {host} is {kind}; Signoff calls such addresses "
                f'only when SIGNOFF_CALLBACK_HOSTS names it (e.g. ["{address}"])'
            )
    elif _bare(host) in METADATA_NAMES and _bare(host) not in {_bare(p) for p in patterns}:
        return (
            f"callback_url's host {host!r} is a cloud metadata service; Signoff calls it "
            "only when SIGNOFF_CALLBACK_HOSTS names it exactly"
        )
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's answer for `host`, as the resolver of record."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Checked:
    """A host and the checked answer a request to it may connect to."""

    host: str  # as the connection pool names it: ASCII (IDNA), lower case
    addresses: tuple[str, ...]


# The checked answer for the request being sent in this task. A context variable
# rather than state on the client: deliveries run concurrently on one pool.
_PINNED: contextvars.ContextVar[Checked | None] = contextvars.ContextVar(
    "signoff_callback_pin", default=None
)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the pinned, checked addresses of the request's host; never resolves."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        pin = _PINNED.get()
        if pin is None or pin.host != host.lower():
            raise httpcore.ConnectError(f"no checked address for {host!r}: not connecting")
        failure: Exception | None = None
        for address in pin.addresses:  # in the resolver's order, as getaddrinfo ranks them
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # a pin always has an address
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("callbacks do not use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, ssl_context: ssl.SSLContext, limits: httpx.Limits) -> None:
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        # httpx takes no network backend; build the pool it builds, with ours. Fail
        # loudly (never fall back to a resolving pool) if httpx stops naming it so.
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError("httpx's transport changed: cannot pin callback addresses")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PinnedBackend(),
        )


class Callbacks:
    """Sends a case's callbacks: signed, to checked addresses only, redirects not followed.

    A connection kept alive for a host goes to an address that was checked when it was
    opened; each delivery still resolves and checks before it is sent."""

    def __init__(
        self,
        hosts: Sequence[str] = (),
        *,
        timeout: float = 10.0,
        resolver: Resolver | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.hosts = tuple(hosts)
        self.timeout = timeout
        self.resolver: Resolver = resolver or system_resolver
        # SSL_CERT_FILE / SSL_CERT_DIR still count (a private CA for internal hooks)
        context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
        self._http = httpx.AsyncClient(
            transport=_PinnedTransport(context, httpx.Limits()),
            timeout=timeout,
            follow_redirects=False,
            # no HTTP(S)_PROXY from the environment: a proxy would resolve the name itself
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(
        self,
        url: str,
        payload: Mapping[str, Any],
        *,
        delivery: str,
        secret: str | None,
        at: int,
    ) -> None:
        """POST `payload` to `url`; raise DeliveryFailed (permanent when retrying cannot help)."""
        body = orjson.dumps(payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "signoff",
            "X-Signoff-Delivery": delivery,
            "X-Signoff-Event": str(payload.get("type", "")),
        }
        if secret:
            headers[signing.HEADER] = signing.sign(
                secret, "POST", signing.url_target(url), body, at
            )
        pin = await self.check(url)
        token = _PINNED.set(pin)
        try:
            response = await self._http.post(
                url, content=body, headers=headers, follow_redirects=False
            )
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"callback failed: {type(exc).__name__}: {exc}") from exc
        finally:
            _PINNED.reset(token)
        status = response.status_code
        if status == 410:
            raise DeliveryFailed("the workflow answered 410 Gone", permanent=True)
        if 300 <= status < 400:
            raise DeliveryFailed(
                f"callback answered HTTP {status}, a redirect; redirects are not followed: "
                "make callback_url the final address"
            )
        if not 200 <= status < 300:
            after = response.headers.get("Retry-After", "")
            raise DeliveryFailed(
                f"callback answered HTTP {status}",
                retry_after=float(after) if after.isdigit() else None,
            )

    async def check(self, url: str) -> Checked:
        """Resolve `url`'s host once and check every address of the answer."""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise DeliveryFailed(f"callback_url is not a URL: {exc}", permanent=True) from exc
        host = parsed.raw_host.decode("ascii").lower()
        if not host_allowed(url, self.hosts):
            # accepted before SIGNOFF_CALLBACK_HOSTS was narrowed: never sent now
            raise DeliveryFailed(
                "the callback_url's host is not one SIGNOFF_CALLBACK_HOSTS allows", permanent=True
            )
        problem = url_problem(url, self.hosts)
        if problem is not None:
            raise DeliveryFailed(f"callback refused: {problem}", permanent=True)
        literal = ip_literal(host)
        if literal is not None:
            answer: Sequence[str] = [host]
        else:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            try:
                answer = await asyncio.wait_for(self.resolver(host, port), self.timeout)
            except (OSError, TimeoutError) as exc:
                raise DeliveryFailed(
                    f"callback host {host!r} did not resolve: {type(exc).__name__}: {exc}"
                ) from exc
            if not answer:
                raise DeliveryFailed(f"callback host {host!r} resolved to no address")
        for text in answer:
            address = ip_literal(text.partition("%")[0])
            if address is None:
                raise DeliveryFailed(
                    f"callback refused: the resolver answered {text!r} for {host!r}, "
                    "not an address",
                    permanent=True,
                )
            kind = refused_kind(address)
            if kind and not _opened(host, address, kind, self.hosts):
                raise DeliveryFailed(_why_refused(host, address, kind), permanent=True)
        return Checked(host, tuple(answer))
