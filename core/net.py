"""Outbound connections to addresses a user chose (a URL a tool fetches, later a provider's base
URL): only to public internet addresses, checked after DNS resolution.

`resolve_public` resolves a host name once and refuses it when any of its addresses is loopback,
private, link-local (cloud metadata at 169.254.169.254 included), shared (carrier-grade NAT),
multicast, unspecified, reserved or otherwise not globally routable, including such IPv4 addresses
wrapped in IPv6 (mapped, 6to4, Teredo, NAT64). The caller then connects to one of the returned
addresses, never to the name again, so a DNS answer that changes between the check and the connect
(DNS rebinding) cannot bypass it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx2

from core.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services. All are also refused as link-local or not global; named for the message.
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
    }
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddress(Exception):
    """The destination is not a public internet address (or cannot be resolved)."""


class Unresolvable(BlockedAddress):
    """The host has no address here (now): refused too, since nothing could connect to it."""


@dataclass(frozen=True, kw_only=True)
class NetPolicy:
    # Test-only (OUTBOUND_ALLOW_LOOPBACK): lets tests reach servers they run on 127.0.0.1 / ::1.
    allow_loopback: bool = False


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's address
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _refused_kind(ip: IPAddress, policy: NetPolicy) -> str | None:
    """What kind of non-public address `ip` is ("a loopback address"), or None if it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "a link-local address"
        inner = _embedded_ipv4(ip)
        if inner is not None:
            kind = _refused_kind(inner, policy)
            return f"{kind[: -len(' address')]} address wrapped in IPv6 ({inner})" if kind else None
    if ip.is_loopback:
        return None if policy.allow_loopback else "a loopback address"
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for kind, flagged in (
        ("an unspecified", ip.is_unspecified),
        ("a multicast", ip.is_multicast),
        ("a link-local", ip.is_link_local),
        ("a private", ip.is_private),
        ("a reserved", ip.is_reserved),
        ("a non-public", not ip.is_global),
    ):
        if flagged:
            return f"{kind} address"
    return None


def address_problem(ip: IPAddress, policy: NetPolicy | None = None) -> str | None:
    """Why a connection to `ip` is refused ("10.0.0.1 is a private address"), or None when it is a
    public internet address."""
    kind = _refused_kind(ip, policy or NetPolicy())
    return f"{ip} is {kind}" if kind else None


def ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def resolve_public(host: str, port: int, policy: NetPolicy | None = None) -> list[IPAddress]:
    """The addresses of `host`, all public; raises BlockedAddress otherwise (naming the reason)."""
    literal = ip_literal(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except (socket.gaierror, UnicodeError) as exc:
            raise Unresolvable(f"cannot resolve {host!r}: {exc}") from None
        addresses = []
        for _family, _type, _proto, _name, sockaddr in infos:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if ip not in addresses:
                addresses.append(ip)
        if not addresses:
            raise Unresolvable(f"cannot resolve {host!r}")
    for ip in addresses:
        if (kind := _refused_kind(ip, policy or NetPolicy())) is not None:
            # The address itself only for a literal: for a name it would map internal names for
            # whoever asks.
            where = f"{ip} is" if literal is not None else f"{host} resolves to"
            raise BlockedAddress(f"refused: {where} {kind}")
    return addresses


async def check_public_url(
    url: str, field: str, what: str, policy: NetPolicy | None = None, *, any_address: bool = False
) -> None:
    """For a URL given for the servers to call (a provider's base_url, an MCP server's url): an
    http(s) URL, and unless `any_address` (an admin's: a local model server is a normal setup) every
    address of its host public. Raises InvalidInput naming `field`."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a bad port or bracket: not a URL
        raise InvalidInput(f"{field}: not a valid URL", field=field) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"{field}: must be an http(s) URL", field=field)
    if any_address:
        return
    try:
        await resolve_public(parts.hostname, port, policy)
    except BlockedAddress as exc:
        raise InvalidInput(
            f"{field}: {exc}; only an admin may point {what} at a non-public address", field=field
        ) from None


async def url_refusal(url: str, policy: NetPolicy | None = None, *, dns_wait_s: float) -> str | None:
    """Why this server refuses `url` as a destination, without the leading "refused: " ("10.0.0.1
    is a private address", "intranet.example resolves to a loopback address"), or None when its
    host's addresses are public, or cannot be found here within `dns_wait_s` (then nothing of ours can
    reach it either: a fetch made here fails on its own, and a provider that fetches it resolves it
    on its network, not ours)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a bad port or bracket
        return "not a valid URL"
    if parts.scheme not in ("http", "https") or not host:
        return "not an http(s) URL"
    try:
        await asyncio.wait_for(resolve_public(host, port, policy), dns_wait_s)
    except (Unresolvable, TimeoutError):
        return None
    except BlockedAddress as exc:
        return str(exc).removeprefix("refused: ")
    return None


class _HostPool:
    """The connections to one (scheme, host, port): an inner transport, and how many responses
    read from it are still open (an evicted one is closed when the last is)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.transport = httpx2.AsyncHTTPTransport(verify=context)
        self.in_use = 0
        self.evicted = False


class _ReleasingStream(httpx2.AsyncByteStream):
    """A response's body that hands its host's pool back when closed."""

    def __init__(self, stream: httpx2.AsyncByteStream, release: Callable[[], Awaitable[None]]) -> None:
        self._stream = stream
        self._release: Callable[[], Awaitable[None]] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                await release()


class PinnedTransport(httpx2.AsyncBaseTransport):
    """Sends each request to an address of its host checked just now, keeping the Host header and
    the TLS server name: a DNS answer that changes after the check (DNS rebinding) is never
    connected to. Use with `follow_redirects=False` and `trust_env=False` (a proxy would connect by
    name). httpx2: the client library of the openai and mcp SDKs.

    Connections are pooled per (scheme, host name, port), each host with its own inner transport:
    the request the inner one sees names the address, and its pool is keyed by that, so one pool
    would hand a.example's connection, TLS-verified for a.example, to a request for b.example at
    the same address (a shared ingress or host): b's certificate never checked, b's body sent to
    whatever a.example's name reached. At most `max_hosts` hosts are kept, the least recently used
    closed (once their open responses are); all share one TLS context (`ssl_context`, else one
    made on first use), which takes tens of ms of CPU to build."""

    def __init__(
        self,
        policy: NetPolicy | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_hosts: int = 256,
    ) -> None:
        self._policy = policy
        self._context = ssl_context
        self._max_hosts = max_hosts
        self._pools: OrderedDict[tuple[str, str, int], _HostPool] = OrderedDict()

    async def _checkout(self, key: tuple[str, str, int]) -> _HostPool:
        pool = self._pools.get(key)
        if pool is not None:
            self._pools.move_to_end(key)
        else:
            if self._context is None:
                self._context = httpx2.create_ssl_context()
            pool = self._pools[key] = _HostPool(self._context)
            while len(self._pools) > self._max_hosts:
                _, old = self._pools.popitem(last=False)
                old.evicted = True
                if old.in_use == 0:
                    await old.transport.aclose()
        pool.in_use += 1
        return pool

    async def _release(self, pool: _HostPool) -> None:
        pool.in_use -= 1
        if pool.evicted and pool.in_use == 0:
            await pool.transport.aclose()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            addresses = await resolve_public(url.host, port, self._policy)
        except BlockedAddress as exc:
            raise httpx2.ConnectError(str(exc), request=request) from None
        pool = await self._checkout((url.scheme, url.host, port))
        try:
            response = await self._send(pool.transport, request, addresses)
        except BaseException:
            await self._release(pool)
            raise
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        response.stream = _ReleasingStream(response.stream, lambda: self._release(pool))
        return response

    async def _send(
        self, inner: httpx2.AsyncHTTPTransport, request: httpx2.Request, addresses: list[IPAddress]
    ) -> httpx2.Response:
        url = request.url
        if ip_literal(url.host) is not None:
            return await inner.handle_async_request(request)
        if url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": url.host}
        for index, address in enumerate(addresses):  # the next checked address if one does not answer
            request.url = url.copy_with(host=str(address))
            try:
                return await inner.handle_async_request(request)
            except httpx2.ConnectError:
                if index == len(addresses) - 1:
                    raise
        raise AssertionError("resolve_public returns at least one address")

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), OrderedDict()
        for pool in pools:
            await pool.transport.aclose()
