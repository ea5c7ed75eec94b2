"""The outbound guard: the one way the sidecar opens connections on a tool's behalf.

    guarded_client(policy)          an httpx.AsyncClient whose every connection is checked
    └── _SchemeGuard                 refuses anything but http/https before any connection
        └── AsyncHTTPTransport       httpx's transport, its pool given _PinnedBackend
            └── _PinnedBackend       resolves once, checks every address, connects by IP

Each new connection (including every redirect hop to a new origin) goes through
`_PinnedBackend.connect_tcp`, so each hop is checked. TLS still verifies and sends
SNI for the original host name: httpcore calls `start_tls` with the origin's host,
not with the address the TCP connection went to.

`guarded_mcp_client(policy, ...)` is the same stack for httpx2, the HTTP client of
the `mcp` package, used for MCP upstreams; `guarded_connector(policy, ...)` is the same
pinned connect for the lean client (`sidecar.lean_http`) of the MCP pool's one-POST calls.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar
from urllib.parse import urlsplit

import anyio
import anyio.abc
import httpcore
import httpcore2
import httpx
import httpx2

from sidecar.settings import parse_allowlist
from tools.base import OutboundBlocked

__all__ = [
    "OutboundPolicy",
    "guarded_client",
    "guarded_connector",
    "guarded_mcp_client",
    "guarded_transport",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
_SocketOption: TypeAlias = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)

_Stream = TypeVar("_Stream")

_METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_ULA = ipaddress.IPv6Network("fc00::/7")


def _ipv4_refusal(address: ipaddress.IPv4Address) -> str | None:
    checks = (
        (address in _THIS_NETWORK, "unspecified (0.0.0.0/8)"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address in _CGNAT, "carrier-grade NAT (100.64.0.0/10)"),
        (address.is_reserved, "reserved"),
        (address.is_private, "private"),
        (not address.is_global, "not globally routable"),
    )
    return next((reason for hit, reason in checks if hit), None)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _ipv6_refusal(address: ipaddress.IPv6Address) -> str | None:
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        kind, ipv4 = embedded
        reason = _refusal(ipv4)
        return None if reason is None else f"the {kind} form of {ipv4}, which is {reason}"
    checks = (
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address in _IPV4_COMPATIBLE, "IPv4-compatible (deprecated)"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address in _ULA, "unique local (fc00::/7)"),
        (address.is_site_local, "site-local"),
        (address.is_reserved, "reserved"),
        (address.is_private, "private"),
        (not address.is_global, "not globally routable"),
    )
    return next((reason for hit, reason in checks if hit), None)


def _refusal(address: IPAddress) -> str | None:
    if address in _METADATA:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv4Address):
        return _ipv4_refusal(address)
    return _ipv6_refusal(address)


class OutboundPolicy:
    """Which destinations outbound connections may reach; the operator allowlist lives here."""

    def __init__(self, allow: Sequence[str] = ()) -> None:
        allowed = parse_allowlist(allow)  # `ValueError` names a bad entry
        self._hosts = allowed.hosts
        self._networks = allowed.networks

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why `address` (an address of `host`) may not be reached, or None when it may."""
        if host.lower().rstrip(".") in self._hosts:
            return None
        if any(address in network for network in self._networks):
            return None
        return _refusal(address)

    async def resolve(self, host: str, port: int) -> list[str]:
        """Resolve `host` once and return its addresses, all checked; raise OutboundBlocked."""
        try:
            addresses: list[IPAddress] = [ipaddress.ip_address(host)]
        except ValueError:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        if not addresses:
            raise OSError(f"no addresses found for {host!r}")
        for address in addresses:
            reason = self.refusal(host, address)
            if reason is not None:
                raise OutboundBlocked(host, f"{address} is {reason}")
        return [str(address) for address in addresses]


async def _connect_pinned(
    policy: OutboundPolicy,
    connect: Callable[[str, float | None], Awaitable[_Stream]],
    host: str,
    port: int,
    timeout: float | None,  # noqa: ASYNC109 (handed on to the connect call)
    errors: tuple[type[Exception], ...],
) -> _Stream:
    """Resolve `host` once, check every address, connect to the first that answers.

    Shared by the httpcore and httpcore2 backends; `errors` is that library's
    (ConnectError, ConnectTimeout) pair, so its client maps failures as usual.
    """
    connect_error, connect_timeout = errors
    deadline = None if timeout is None else anyio.current_time() + timeout
    try:
        with anyio.fail_after(timeout):
            addresses = await policy.resolve(host, port)
    except TimeoutError as exc:
        raise connect_timeout(f"resolving {host!r} timed out") from exc
    except OSError as exc:
        raise connect_error(f"cannot resolve {host!r}: {exc}") from exc
    failure: Exception | None = None
    for address in addresses:
        remaining = None if deadline is None else max(0.0, deadline - anyio.current_time())
        try:
            # An IP literal: anyio connects to it without another lookup.
            return await connect(address, remaining)
        except connect_error as exc:
            failure = exc
    assert failure is not None
    raise failure


class _Pinning:
    """The network backend of both HTTP stacks: connects only to addresses the policy
    checked, resolving each host once (`_PinnedBackend`, `_PinnedBackend2`)."""

    def __init__(self, policy: OutboundPolicy, backend: Any, errors: tuple[type[Exception], ...]):
        self._policy = policy
        self._backend = backend
        self._errors = errors

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> Any:
        async def connect(address: str, remaining: float | None) -> Any:
            return await self._backend.connect_tcp(
                address,
                port,
                timeout=remaining,
                local_address=local_address,
                socket_options=socket_options,
            )

        return await _connect_pinned(self._policy, connect, host, port, timeout, self._errors)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> Any:
        raise OutboundBlocked(path, "unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class _PinnedBackend(_Pinning, httpcore.AsyncNetworkBackend):
    """The pinned backend for httpcore (httpx, tool traffic)."""

    def __init__(self, policy: OutboundPolicy) -> None:
        errors = (httpcore.ConnectError, httpcore.ConnectTimeout)
        super().__init__(policy, httpcore.AnyIOBackend(), errors)


class _PinnedBackend2(_Pinning, httpcore2.AsyncNetworkBackend):
    """The pinned backend for httpcore2, the transport of the `mcp` package's client."""

    def __init__(self, policy: OutboundPolicy) -> None:
        errors = (httpcore2.ConnectError, httpcore2.ConnectTimeout)
        super().__init__(policy, httpcore2.AnyIOBackend(), errors)


def _check_scheme(scheme: str, host: str) -> None:
    """Refuse anything but http and https, before a connection is considered."""
    if scheme not in ("http", "https"):
        what = f"scheme {scheme!r}" if scheme else "a URL without a scheme"
        raise OutboundBlocked(host or "(no host)", f"{what} is not allowed (http/https only)")


class _SchemeCheck:
    """Refuses any scheme but http and https before a connection is considered (the
    transport of both HTTP stacks: `_SchemeGuard`, `_SchemeGuard2`)."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    async def handle_async_request(self, request: Any) -> Any:
        _check_scheme(request.url.scheme, request.url.host)
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        await self._transport.aclose()


class _SchemeGuard(_SchemeCheck, httpx.AsyncBaseTransport):
    """The scheme check for httpx."""


class _SchemeGuard2(_SchemeCheck, httpx2.AsyncBaseTransport):
    """The scheme check for httpx2."""


def guarded_transport(
    policy: OutboundPolicy, *, max_connections: int = 100
) -> httpx.AsyncBaseTransport:
    """An httpx transport that connects only where `policy` allows, over http or https."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=min(20, max_connections)
    )
    transport = httpx.AsyncHTTPTransport(trust_env=False, limits=limits)
    # httpx offers no way to pass a network backend, so swap in a pool built with one.
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        raise TypeError("unsupported httpx version: AsyncHTTPTransport._pool is not a pool")
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_PinnedBackend(policy),
    )
    return _SchemeGuard(transport)


class _GuardedClient(httpx.AsyncClient):
    """An AsyncClient that reports blocked odd IPv4 spellings httpx rejects as invalid."""

    def __init__(self, policy: OutboundPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._policy = policy

    def build_request(self, method: str, url: httpx.URL | str, **kwargs: Any) -> httpx.Request:
        try:
            return super().build_request(method, url, **kwargs)
        except httpx.InvalidURL:
            refused = self._odd_ipv4_refusal(url)
            if refused is not None:
                raise refused from None
            raise

    def _odd_ipv4_refusal(self, url: httpx.URL | str) -> OutboundBlocked | None:
        # httpx rejects e.g. "0177.0.0.1", which C resolvers read as 127.0.0.1.
        host = urlsplit(str(url)).hostname or ""
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
        reason = self._policy.refusal(host, address)
        return None if reason is None else OutboundBlocked(host, f"{address} is {reason}")


def guarded_client(
    policy: OutboundPolicy,
    *,
    max_connections: int = 100,
    timeout: httpx.Timeout | float = 60.0,
    user_agent: str = "orq-sidecar",
) -> httpx.AsyncClient:
    """An AsyncClient for tool traffic; redirects are off unless a request asks for them."""
    return _GuardedClient(
        policy,
        transport=guarded_transport(policy, max_connections=max_connections),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": user_agent},
    )


def guarded_mcp_client(
    policy: OutboundPolicy,
    *,
    headers: Mapping[str, str],
    timeout: httpx2.Timeout,
    user_agent: str = "orq-sidecar",
    ssl_context: ssl.SSLContext | None = None,
) -> httpx2.AsyncClient:
    """An httpx2 client (what the `mcp` package speaks) behind the same guard as tool traffic.

    Give clients made often (a pool's) one `ssl_context`: each context holds the whole
    trust store, megabytes of native memory."""
    context = ssl_context or httpx2.create_ssl_context(trust_env=False)
    transport = httpx2.AsyncHTTPTransport(verify=context, trust_env=False)
    if not isinstance(getattr(transport, "_pool", None), httpcore2.AsyncConnectionPool):
        raise TypeError("unsupported httpx2 version: AsyncHTTPTransport._pool is not a pool")
    transport._pool = httpcore2.AsyncConnectionPool(
        ssl_context=context,
        max_keepalive_connections=8,
        network_backend=_PinnedBackend2(policy),
    )
    return httpx2.AsyncClient(
        transport=_SchemeGuard2(transport),
        headers={"User-Agent": user_agent, **headers},
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )


def guarded_connector(
    policy: OutboundPolicy, ssl_context: ssl.SSLContext
) -> Callable[[str, str, int], Awaitable[anyio.abc.ByteStream]]:
    """A lean client's `Connector`: resolve once, check every address, connect by IP.

    TLS verifies and sends SNI for the host name, not for the address connected to.
    `OutboundBlocked` for a refused address; `OSError` when no address answers."""

    async def connect(scheme: str, host: str, port: int) -> anyio.abc.ByteStream:
        failure: OSError | None = None
        for address in await policy.resolve(host, port):
            try:
                if scheme == "https":
                    return await anyio.connect_tcp(
                        address,
                        port,
                        ssl_context=ssl_context,
                        tls_hostname=host,
                        tls_standard_compatible=False,
                    )
                return await anyio.connect_tcp(address, port)
            except OSError as exc:
                failure = exc
        assert failure is not None  # `resolve` returns at least one address
        raise failure

    return connect
