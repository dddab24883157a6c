"""The pinned transport's connection pools (core/net.py, the webhook attempts' client): one per
host name, never shared by two hosts behind one address (a shared ingress, or a host serving many
names), each host's certificate checked on its own connection; at most `max_hosts` kept, the least
recently used closed once its responses are. Two names resolved to one local server, as a shared
front would have them."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core import net
from core.net import NetPolicy, PinnedTransport

LOCAL = NetPolicy(allow_loopback=True)


class Server:
    """An HTTP/1.1 server keeping connections open; records each request's Host and the client's
    port (one per TCP connection), and which connections the client closed."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []
        self.closed: set[int] = set()
        self.changed = asyncio.Condition()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = writer.get_extra_info("peername")[1]
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                fields = dict(line.split(":", 1) for line in head.split("\r\n")[1:] if ":" in line)
                headers = {k.lower(): v.strip() for k, v in fields.items()}
                await reader.readexactly(int(headers.get("content-length", "0")))
                self.seen.append((headers["host"].split(":")[0], port))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            async with self.changed:
                self.closed.add(port)
                self.changed.notify_all()

    async def until_closed(self, port: int) -> None:
        async with asyncio.timeout(10), self.changed:
            await self.changed.wait_for(lambda: port in self.closed)

    def port_of(self, host: str) -> int:
        return [port for seen, port in self.seen if seen == host][-1]


@contextlib.asynccontextmanager
async def serving(context: ssl.SSLContext | None = None) -> AsyncIterator[tuple[Server, int]]:
    server = Server()
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=context)
    try:
        yield server, listening.sockets[0].getsockname()[1]
    finally:
        listening.close()


@pytest.fixture(autouse=True)
def names_on_one_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """a.test, b.test and c.test resolve (checked, as every name is) to 127.0.0.1."""
    resolve = net.resolve_public

    async def resolve_test_names(
        host: str, port: int, policy: NetPolicy | None = None
    ) -> list[net.IPAddress]:
        if host.endswith(".test"):
            return await resolve("127.0.0.1", port, policy)
        return await resolve(host, port, policy)

    monkeypatch.setattr(net, "resolve_public", resolve_test_names)


def certificates(tmp_path: Path, names: list[str]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for `names` from a new CA, and a client context trusting
    that CA only."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "leaf.pem", tmp_path / "leaf.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server, client


def client_of(transport: PinnedTransport) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=transport, follow_redirects=False, trust_env=False, timeout=10)


async def test_two_hosts_behind_one_address_never_share_a_connection() -> None:
    """The reviewer's probe: a.test, b.test, a.test arrived on one TCP connection (the pool was
    keyed by the address the request was rewritten to)."""
    async with serving() as (server, port), client_of(PinnedTransport(LOCAL)) as client:
        for host in ("a.test", "b.test", "a.test", "b.test"):
            assert (await client.post(f"http://{host}:{port}/", content=b"x")).status_code == 200
    ports = [p for _, p in server.seen]
    assert [h for h, _ in server.seen] == ["a.test", "b.test", "a.test", "b.test"]
    assert ports[0] == ports[2] and ports[1] == ports[3], "each host keeps its own connection"
    assert ports[0] != ports[1], "b.test reused a.test's connection"


async def test_each_hosts_certificate_is_checked_behind_one_address(tmp_path: Path) -> None:
    """A certificate for a.test only: b.test at the same address is refused, even right after a
    connection to a.test was opened and pooled (it was handed that connection, unverified)."""
    server_tls, client_tls = certificates(tmp_path, ["a.test"])
    async with (
        serving(server_tls) as (_, port),
        client_of(PinnedTransport(LOCAL, ssl_context=client_tls)) as client,
    ):
        assert (await client.post(f"https://a.test:{port}/", content=b"x")).status_code == 200
        with pytest.raises(httpx2.ConnectError, match="Hostname mismatch"):
            await client.post(f"https://b.test:{port}/", content=b"x")
        # Verification is on by default: the server's CA is not a public one.
        async with client_of(PinnedTransport(LOCAL)) as default:
            with pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await default.post(f"https://a.test:{port}/", content=b"x")


async def test_hosts_share_one_tls_context(tmp_path: Path) -> None:
    """One context for every host's pool (building one per host or attempt costs tens of ms): the
    given one, the only one trusting the test's CA, verified both hosts, each on its connection."""
    server_tls, client_tls = certificates(tmp_path, ["a.test", "b.test"])
    transport = PinnedTransport(LOCAL, ssl_context=client_tls)
    async with serving(server_tls) as (server, port), client_of(transport) as client:
        for host in ("a.test", "b.test"):
            assert (await client.post(f"https://{host}:{port}/", content=b"x")).status_code == 200
        assert server.port_of("a.test") != server.port_of("b.test")


async def test_the_least_recently_used_host_is_closed_once_its_response_is() -> None:
    async with (
        serving() as (server, port),
        client_of(PinnedTransport(LOCAL, max_hosts=2)) as client,
    ):
        async with client.stream("POST", f"http://a.test:{port}/", content=b"x") as open_response:
            a_port = server.port_of("a.test")
            for host in ("b.test", "c.test"):  # a.test is evicted, its response still open
                assert (await client.post(f"http://{host}:{port}/", content=b"x")).status_code == 200
            assert a_port not in server.closed
            assert await open_response.aread() == b"ok"
        await server.until_closed(a_port)
        assert server.port_of("b.test") not in server.closed
        assert (await client.post(f"http://a.test:{port}/", content=b"x")).status_code == 200
        assert server.port_of("a.test") != a_port  # a new connection; b.test now evicted
        await server.until_closed(server.port_of("b.test"))
