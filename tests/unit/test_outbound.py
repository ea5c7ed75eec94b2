"""The outbound guard: address policy, allowlist, and real connections on loopback."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sidecar.lean_http import LeanHttp, Unreachable
from sidecar.outbound import OutboundPolicy, guarded_client, guarded_connector
from tools.base import OutboundBlocked

# --- the address policy -------------------------------------------------------------------

BLOCKED = [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.1.1", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.255", "carrier-grade NAT"),
    ("224.0.0.1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("169.254.169.254", "metadata"),
    ("100.100.100.200", "metadata"),
    ("fd00:ec2::254", "metadata"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fe80::1", "link-local"),
    ("fc00::1", "unique local"),
    ("fd12:3456::1", "unique local"),
    ("ff02::1", "multicast"),
    ("fec0::1", "site-local"),
    ("::ffff:127.0.0.1", "IPv4-mapped form of 127.0.0.1, which is loopback"),
    ("::ffff:10.0.0.1", "IPv4-mapped form of 10.0.0.1, which is private"),
    ("::ffff:169.254.169.254", "IPv4-mapped form of 169.254.169.254, which is a cloud metadata"),
    ("::127.0.0.1", "IPv4-compatible"),
    ("2002:7f00:1::", "6to4 form of 127.0.0.1"),
    ("2002:a9fe:a9fe::1", "6to4 form of 169.254.169.254"),
    ("64:ff9b::7f00:1", "NAT64 form of 127.0.0.1"),
    ("64:ff9b::a40:1", "NAT64 form of 10.64.0.1"),
    ("2001:db8::1", "private"),
]

PUBLIC = ["8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.1", "2606:4700:4700::1111"]
PUBLIC_EMBEDDED = ["::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::808:808"]


@pytest.mark.parametrize(("address", "reason"), BLOCKED)
def test_refusal_names_the_blocked_range(address: str, reason: str) -> None:
    refusal = OutboundPolicy().refusal("example.test", ipaddress.ip_address(address))
    assert refusal is not None
    assert reason in refusal


@pytest.mark.parametrize("address", PUBLIC + PUBLIC_EMBEDDED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert OutboundPolicy().refusal("example.test", ipaddress.ip_address(address)) is None


def test_allowed_host_name_skips_the_address_check_case_insensitively() -> None:
    policy = OutboundPolicy(["LocalHost", "internal.example"])
    loopback = ipaddress.ip_address("127.0.0.1")
    assert policy.refusal("localhost", loopback) is None
    assert policy.refusal("INTERNAL.example.", ipaddress.ip_address("10.0.0.5")) is None
    assert policy.refusal("other.example", loopback) == "loopback"


def test_allowed_ip_and_cidr_admit_only_their_addresses() -> None:
    policy = OutboundPolicy(["127.0.0.1", "10.0.0.0/8", "::1"])
    for address in ("127.0.0.1", "10.200.0.1", "::1"):
        assert policy.refusal("any.test", ipaddress.ip_address(address)) is None
    assert policy.refusal("any.test", ipaddress.ip_address("127.0.0.2")) == "loopback"
    assert policy.refusal("any.test", ipaddress.ip_address("172.16.0.1")) == "private"
    # An allowed IPv4 address does not admit its IPv4-mapped spelling.
    assert policy.refusal("any.test", ipaddress.ip_address("::ffff:127.0.0.1")) is not None


@pytest.mark.parametrize(
    "entry",
    [
        *("10.0.0.0/33", "10.0.0.1/8", "fe80::zz", "", "bad host", "http://x.example"),
        *("*.example.com", "0177.0.0.1", "127.1", "2130706433"),
    ],
)
def test_invalid_allowlist_entry_is_rejected_by_name(entry: str) -> None:
    with pytest.raises(ValueError, match="allowlist entry") as caught:
        OutboundPolicy([entry])
    assert repr(entry) in str(caught.value)


# --- a fake resolver and real loopback servers -----------------------------------------------


@dataclass
class FakeDNS:
    """Answers for `*.test` names; every lookup is recorded."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    fake = FakeDNS()
    real = socket.getaddrinfo

    def getaddrinfo(host: bytes | str | None, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        fake.calls.append(name)
        if not name.endswith(".test"):
            return real(host, port, *args, **kwargs)
        if name not in fake.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (ip, port),
            )
            for ip in fake.answers[name]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return fake


class _Handler(BaseHTTPRequestHandler):
    """`/redirect?to=URL` redirects; anything else answers with the Host header it got
    (a POST too, after reading its body)."""

    def do_GET(self) -> None:
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", unquote(self.path.partition("=")[2]))
            body = b""
        else:
            self.send_response(200)
            body = (self.headers.get("Host") or "").encode()
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.path = "/"
        self.do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True


@dataclass
class Served:
    port: int
    sni: list[str | None] = field(default_factory=list)


def _serve(host: str, tls: ssl.SSLContext | None = None) -> Iterator[Served]:
    server = _Server((host, 0), _Handler)
    served = Served(port=server.server_address[1])
    if tls is not None:
        tls.sni_callback = lambda _sock, name, _ctx: served.sni.append(name)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def server() -> Iterator[Served]:
    yield from _serve("127.0.0.1")


@pytest.fixture
def other_loopback_server() -> Iterator[Served]:
    """A server on 127.0.0.2, reachable on Linux but not allowed by `allow=["127.0.0.1"]`."""
    yield from _serve("127.0.0.2")


def _certificate_chain() -> tuple[bytes, bytes, bytes]:
    """A CA and a leaf for `pinned.test` signed by it: (ca pem, leaf pem, leaf key pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "outbound test CA")])
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pinned.test")])

    def build(subject: x509.Name, key: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            san = x509.SubjectAlternativeName([x509.DNSName("pinned.test")])
            builder = builder.add_extension(san, critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    pem = serialization.Encoding.PEM
    key_pem = leaf_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ca_pem = build(ca_name, ca_key, True).public_bytes(pem)
    return ca_pem, build(leaf_name, leaf_key, False).public_bytes(pem), key_pem


@pytest.fixture
def tls_server(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """A TLS server on 127.0.0.1 for `pinned.test`; the guard's client trusts its CA."""
    ca_pem, leaf_pem, key_pem = _certificate_chain()
    (tmp_path / "leaf.pem").write_bytes(leaf_pem + key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "leaf.pem")
    client_ctx = ssl.create_default_context(cadata=ca_pem.decode())
    monkeypatch.setattr(httpx, "create_ssl_context", lambda **_: client_ctx)
    yield from _serve("127.0.0.1", server_ctx)


def _blocked(caught: pytest.ExceptionInfo[OutboundBlocked], host: str) -> str:
    assert type(caught.value) is OutboundBlocked
    assert caught.value.code == "outbound_blocked"
    assert caught.value.host == host
    return caught.value.reason


# --- real connections ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_allowed_loopback_server_is_reached(server: Served) -> None:
    async with guarded_client(OutboundPolicy(["127.0.0.1"])) as client:
        response = await client.get(f"http://127.0.0.1:{server.port}/")
    assert response.status_code == 200
    assert response.request.headers["User-Agent"] == "orq-sidecar"


@pytest.mark.anyio
async def test_default_policy_refuses_loopback_by_host(server: Served) -> None:
    async with guarded_client(OutboundPolicy()) as client:
        with pytest.raises(OutboundBlocked) as caught:
            await client.get(f"http://127.0.0.1:{server.port}/")
    assert "loopback" in _blocked(caught, "127.0.0.1")


@pytest.mark.anyio
async def test_allowed_host_name_is_connected_by_ip_with_its_host_header(server: Served) -> None:
    async with guarded_client(OutboundPolicy(["localhost"])) as client:
        response = await client.get(f"http://localhost:{server.port}/")
    assert response.text == f"localhost:{server.port}"


ODD_SPELLINGS = ["2130706433", "0x7f000001", "127.1", "017700000001", "0x7f.1"]


@pytest.mark.anyio
@pytest.mark.parametrize("host", [*ODD_SPELLINGS, "0177.0.0.1", "0", "[::ffff:127.0.0.1]"])
async def test_odd_loopback_spellings_are_refused(server: Served, host: str) -> None:
    async with guarded_client(OutboundPolicy()) as client:
        with pytest.raises(OutboundBlocked) as caught:
            await client.get(f"http://{host}:{server.port}/")
    _blocked(caught, host.strip("[]"))


@pytest.mark.anyio
@pytest.mark.parametrize("host", ODD_SPELLINGS)
async def test_odd_spellings_really_mean_loopback(server: Served, host: str) -> None:
    async with guarded_client(OutboundPolicy(["127.0.0.1"])) as client:
        response = await client.get(f"http://{host}:{server.port}/")
    assert response.status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("url", "host"), [("ftp://127.0.0.1/x", "127.0.0.1"), ("file:///etc/passwd", "(no host)")]
)
async def test_non_http_schemes_are_refused(url: str, host: str) -> None:
    async with guarded_client(OutboundPolicy(["127.0.0.1"])) as client:
        with pytest.raises(OutboundBlocked) as caught:
            await client.get(url)
    assert "scheme" in _blocked(caught, host)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("target", "host"),
    [
        ("http://127.0.0.2:{port}/", "127.0.0.2"),
        ("http://[::1]:{port}/", "::1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("ftp://127.0.0.1/", "127.0.0.1"),
    ],
)
async def test_redirect_to_a_blocked_destination_is_refused_at_that_hop(
    server: Served, other_loopback_server: Served, target: str, host: str
) -> None:
    target = target.format(port=other_loopback_server.port)
    async with guarded_client(OutboundPolicy(["127.0.0.1"]), timeout=5.0) as client:
        first = await client.get(f"http://127.0.0.1:{server.port}/redirect?to={target}")
        assert first.status_code == 302
        with pytest.raises(OutboundBlocked) as caught:
            await client.get(first.request.url, follow_redirects=True)
    _blocked(caught, host)


@pytest.mark.anyio
async def test_redirect_to_an_allowed_destination_is_followed(
    server: Served, other_loopback_server: Served
) -> None:
    target = f"http://127.0.0.2:{other_loopback_server.port}/"
    async with guarded_client(OutboundPolicy(["127.0.0.0/8"])) as client:
        response = await client.get(
            f"http://127.0.0.1:{server.port}/redirect?to={target}", follow_redirects=True
        )
    assert response.status_code == 200
    assert response.text == f"127.0.0.2:{other_loopback_server.port}"


@pytest.mark.anyio
async def test_each_new_connection_resolves_once_and_uses_the_checked_ip(
    server: Served, dns: FakeDNS
) -> None:
    # pinned.test exists only in the fake resolver, so reaching it proves the pinned IP was used.
    dns.answers["pinned.test"] = ["127.0.0.1"]
    async with guarded_client(OutboundPolicy(["127.0.0.1"])) as client:
        async with client.stream("GET", f"http://pinned.test:{server.port}/") as response:
            stream = response.extensions["network_stream"]
            assert stream.get_extra_info("server_addr") == ("127.0.0.1", server.port)
            assert (await response.aread()) == f"pinned.test:{server.port}".encode()
        assert dns.calls == ["pinned.test"]
        # The handler speaks HTTP/1.0, so the second request needs a new connection.
        await client.get(f"http://pinned.test:{server.port}/")
    assert dns.calls == ["pinned.test", "pinned.test"]


@pytest.mark.anyio
async def test_any_blocked_address_refuses_the_host(dns: FakeDNS) -> None:
    dns.answers["mixed.test"] = ["93.184.216.34", "127.0.0.1"]
    policy = OutboundPolicy()
    with pytest.raises(OutboundBlocked) as caught:
        await policy.resolve("mixed.test", 80)
    assert "127.0.0.1" in _blocked(caught, "mixed.test")
    async with guarded_client(policy) as client:
        with pytest.raises(OutboundBlocked):
            await client.get("http://mixed.test/")
    assert dns.calls == ["mixed.test", "mixed.test"]


@pytest.mark.anyio
async def test_resolve_returns_checked_addresses_in_resolver_order(dns: FakeDNS) -> None:
    dns.answers["public.test"] = ["93.184.216.34", "2606:2800:220:1::1", "93.184.216.34"]
    addresses = await OutboundPolicy().resolve("public.test", 443)
    assert addresses == ["93.184.216.34", "2606:2800:220:1::1"]
    assert await OutboundPolicy(["::1"]).resolve("::1", 80) == ["::1"]


@pytest.mark.anyio
async def test_unresolvable_host_is_a_connect_error(dns: FakeDNS) -> None:
    async with guarded_client(OutboundPolicy()) as client:
        with pytest.raises(httpx.ConnectError, match=r"nxdomain\.test"):
            await client.get("http://nxdomain.test/")


@pytest.mark.anyio
async def test_tls_verifies_and_sends_sni_for_the_original_name(
    tls_server: Served, dns: FakeDNS
) -> None:
    dns.answers["pinned.test"] = ["127.0.0.1"]
    async with guarded_client(OutboundPolicy(["127.0.0.1"])) as client:
        response = await client.get(f"https://pinned.test:{tls_server.port}/")
    assert response.text == f"pinned.test:{tls_server.port}"
    assert tls_server.sni == ["pinned.test"]


@pytest.mark.anyio
async def test_tls_refuses_a_certificate_for_another_name(tls_server: Served, dns: FakeDNS) -> None:
    dns.answers["impostor.test"] = ["127.0.0.1"]
    async with guarded_client(OutboundPolicy(["127.0.0.1"])) as client:
        with pytest.raises(httpx.ConnectError, match="certificate"):
            await client.get(f"https://impostor.test:{tls_server.port}/")


# --- the lean client's connector: the same checks ------------------------------------------


async def _lean_post(policy: OutboundPolicy, url: str) -> bytes:
    http = LeanHttp(connector=guarded_connector(policy, httpx.create_ssl_context()))
    try:
        async with http.post(url, {}, b"{}", 10) as response:
            return await response.aread()
    finally:
        await http.aclose()


@pytest.mark.anyio
async def test_the_lean_connector_refuses_what_the_policy_refuses(
    server: Served, dns: FakeDNS
) -> None:
    with pytest.raises(OutboundBlocked) as caught:
        await _lean_post(OutboundPolicy(), f"http://127.0.0.1:{server.port}/")
    assert "loopback" in _blocked(caught, "127.0.0.1")
    dns.answers["mixed.test"] = ["93.184.216.34", "127.0.0.1"]
    with pytest.raises(OutboundBlocked):
        await _lean_post(OutboundPolicy(), f"http://mixed.test:{server.port}/")
    with pytest.raises(Unreachable):
        await _lean_post(OutboundPolicy(), f"http://nxdomain.test:{server.port}/")


@pytest.mark.anyio
async def test_the_lean_connector_connects_by_the_checked_ip(server: Served, dns: FakeDNS) -> None:
    dns.answers["pinned.test"] = ["127.0.0.1"]  # only the fake resolver knows the name
    answer = await _lean_post(OutboundPolicy(["127.0.0.1"]), f"http://pinned.test:{server.port}/")
    assert answer == f"pinned.test:{server.port}".encode()
    assert dns.calls == ["pinned.test"]


@pytest.mark.anyio
async def test_the_lean_connector_verifies_tls_for_the_original_name(
    tls_server: Served, dns: FakeDNS
) -> None:
    dns.answers["pinned.test"] = ["127.0.0.1"]
    dns.answers["impostor.test"] = ["127.0.0.1"]
    policy = OutboundPolicy(["127.0.0.1"])
    answer = await _lean_post(policy, f"https://pinned.test:{tls_server.port}/")
    assert answer == f"pinned.test:{tls_server.port}".encode()
    assert tls_server.sni == ["pinned.test"]
    with pytest.raises(Unreachable, match="SSL"):
        await _lean_post(policy, f"https://impostor.test:{tls_server.port}/")
