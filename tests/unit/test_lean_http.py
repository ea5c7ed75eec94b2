"""The lean HTTP client, as providers and the MCP pool's one-POST calls use it, against a raw
TCP server on loopback that writes exact bytes."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import anyio.abc
import orjson
import pytest
from anyio.streams.tls import TLSListener
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mcp import MCPError

from sidecar.lean_http import LeanHttp
from sidecar.llm.providers.base import ProviderError, ProviderTimeout
from sidecar.llm.providers.lean_http import LeanTransport
from sidecar.mcp_lean_call import REQUEST_TIMEOUT, lean_call_tool

pytestmark = pytest.mark.anyio

Handler = Callable[[anyio.abc.SocketStream, bytes], Awaitable[bool]]  # False: close after


@dataclass
class Server:
    port: int
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


async def _read_request(stream: anyio.abc.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += await stream.receive()
    return head + b"\r\n\r\n" + body


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[Server]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    server = Server(port)

    async def connection(stream: anyio.abc.SocketStream) -> None:
        server.connections += 1
        async with stream:
            while True:
                try:
                    request = await _read_request(stream)
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                server.requests.append(request)
                if not await handler(stream, request):
                    return

    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, connection)
        yield server
        group.cancel_scope.cancel()


async def json_answer(stream: anyio.abc.SocketStream, request: bytes) -> bool:
    body = b'{"ok": true}'
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    await stream.send(head + b"content-length: %d\r\n\r\n" % len(body) + body)
    return True


async def post(transport: LeanTransport, port: int, seconds: float = 5) -> tuple[int, bytes]:
    async with transport.post(
        f"http://127.0.0.1:{port}/v1/x", {"authorization": "Bearer k"}, b"{}", seconds
    ) as answer:
        return answer.status, b"".join([piece async for piece in answer.aiter_bytes()])


async def test_an_answer_is_read_and_its_connection_kept_for_the_next_call() -> None:
    transport = LeanTransport()
    async with serve(json_answer) as server:
        assert await post(transport, server.port) == (200, b'{"ok": true}')
        assert await post(transport, server.port) == (200, b'{"ok": true}')
        assert server.connections == 1
        assert server.requests[0].startswith(b"POST /v1/x HTTP/1.1\r\n")
        assert b"authorization: Bearer k\r\n" in server.requests[0]
    await transport.aclose()


async def test_a_chunked_stream_arrives_piece_by_piece() -> None:
    go_on = anyio.Event()

    async def chunked(stream: anyio.abc.SocketStream, request: bytes) -> bool:
        await stream.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await go_on.wait()
        await stream.send(b"6\r\nsecond\r\n0\r\n\r\n")
        return True

    transport = LeanTransport()
    url = "http://127.0.0.1:{}/"
    async with (
        serve(chunked) as server,
        transport.post(url.format(server.port), {}, b"", 5) as answer,
    ):
        pieces = answer.aiter_bytes()
        assert await pieces.__anext__() == b"first"  # before the rest was even sent
        go_on.set()
        assert [piece async for piece in pieces] == [b"second"]
    await transport.aclose()


async def test_a_kept_connection_the_server_closed_is_replaced() -> None:
    async def once(stream: anyio.abc.SocketStream, request: bytes) -> bool:
        await json_answer(stream, request)
        return False  # closes the connection after answering

    transport = LeanTransport()
    async with serve(once) as server:
        assert (await post(transport, server.port))[0] == 200
        await anyio.sleep(0.05)  # let the server's close arrive
        assert (await post(transport, server.port))[0] == 200
        assert server.connections == 2
    await transport.aclose()


async def test_a_body_that_ends_with_the_connection_is_read_to_its_end() -> None:
    async def unframed(stream: anyio.abc.SocketStream, request: bytes) -> bool:
        await stream.send(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        return False

    transport = LeanTransport()
    async with serve(unframed) as server:
        assert await post(transport, server.port) == (200, b"all of it")
    await transport.aclose()


async def test_a_framed_body_cut_short_is_a_broken_answer() -> None:
    async def cut(stream: anyio.abc.SocketStream, request: bytes) -> bool:
        await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
        return False

    transport = LeanTransport()
    async with serve(cut) as server:
        with pytest.raises(ProviderError) as caught:
            await post(transport, server.port)
    assert caught.value.code == "provider_stream_broken"
    await transport.aclose()


async def test_a_silent_server_is_a_timeout_and_nothing_listening_is_unreachable() -> None:
    async def silent(stream: anyio.abc.SocketStream, request: bytes) -> bool:
        await anyio.sleep(10)
        return False

    transport = LeanTransport()
    async with serve(silent) as server:
        with pytest.raises(ProviderTimeout):
            await post(transport, server.port, seconds=0.2)
        port = server.port
    with pytest.raises(ProviderError) as caught:
        await post(transport, port)
    assert caught.value.code == "provider_unreachable"
    await transport.aclose()


async def test_a_header_with_a_line_break_is_refused() -> None:
    transport = LeanTransport()
    with pytest.raises(ProviderError, match="line break"):
        async with transport.post("http://127.0.0.1:9/", {"x-key": "a\r\nevil: 1"}, b"", 1):
            pass


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_https_verifies_the_certificate_and_keeps_the_connection(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp.extra(anyio.abc.SocketAttribute.local_port)
    listener = TLSListener(tcp, server_context, standard_compatible=False)
    connections = 0

    async def handle(stream: anyio.abc.ByteStream) -> None:
        nonlocal connections
        connections += 1
        async with stream:
            while True:
                try:
                    await _read_request(stream)  # type: ignore[arg-type]
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                await json_answer(stream, b"")  # type: ignore[arg-type]

    trusting = ssl.create_default_context(cafile=str(cert))
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, handle)
        transport = LeanTransport(ssl_context=trusting)
        url = f"https://127.0.0.1:{port}/v1/x"
        for _ in range(2):
            async with transport.post(url, {}, b"{}", 5) as answer:
                assert (answer.status, await answer.aread()) == (200, b'{"ok": true}')
        assert connections == 1
        with pytest.raises(ProviderError, match="could not be reached"):
            async with LeanTransport().post(url, {}, b"{}", 5):  # the system's CAs refuse it
                pass
        await transport.aclose()
        group.cancel_scope.cancel()


# --- the MCP pool's one-POST call on this client -------------------------------------------


def _event_stream(*events: bytes) -> bytes:
    """An event-stream answer, chunked, with CRLF line ends."""
    body = b"".join(b"event: message\r\ndata: " + event + b"\r\n\r\n" for event in events)
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    chunk = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    return head + b"transfer-encoding: chunked\r\n\r\n" + chunk


async def _call(port: int, seconds: float = 5) -> object:
    http = LeanHttp()
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        return await lean_call_tool(http, url, {"x-key": "k"}, "add", {"a": 1}, seconds)
    finally:
        await http.aclose()


def _call_id(request: bytes) -> int:
    return int(orjson.loads(request.partition(b"\r\n\r\n")[2])["id"])


async def test_an_event_stream_answer_is_found_among_notifications_in_small_pieces() -> None:
    async def streamed(stream: anyio.abc.SocketStream, request: bytes) -> bool:
        progress = b'{"jsonrpc":"2.0","method":"notifications/progress","params":{}}'
        result = b'{"jsonrpc":"2.0","id":%d,"result":{"content":[],' % _call_id(request)
        answer = _event_stream(progress, result + b'"structuredContent":{"r":2}}}')
        for start in range(0, len(answer), 3):  # three bytes at a time
            await stream.send(answer[start : start + 3])
        return True

    async with serve(streamed) as server:
        result = await _call(server.port)
        head = server.requests[0].partition(b"\r\n\r\n")[0].lower()
    assert getattr(result, "structured_content", None) == {"r": 2}
    assert b"x-key: k\r\n" in head
    assert b"mcp-method: tools/call\r\n" in head


async def test_errors_of_the_one_post_call_are_the_clients() -> None:
    async def refusing(stream: anyio.abc.SocketStream, request: bytes) -> bool:
        error = b'"error":{"code":-32602,"message":"no such tool"}'
        body = b'{"jsonrpc":"2.0","id":%d,%s}' % (_call_id(request), error)
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        await stream.send(head + b"content-length: %d\r\n\r\n" % len(body) + body)
        return True

    async def gateway_page(stream: anyio.abc.SocketStream, request: bytes) -> bool:
        await stream.send(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 4\r\n\r\noops")
        return True

    async with serve(refusing) as server:
        with pytest.raises(MCPError) as caught:
            await _call(server.port)
    assert caught.value.code == -32602
    assert "no such tool" in caught.value.error.message
    async with serve(gateway_page) as server:
        with pytest.raises(MCPError, match="HTTP 502 without JSON"):
            await _call(server.port)


async def test_a_call_out_of_time_is_the_clients_timeout_and_the_server_sees_it_leave() -> None:
    left = anyio.Event()

    async def stalled(stream: anyio.abc.SocketStream, request: bytes) -> bool:
        await stream.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
        try:
            await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            left.set()
        return False

    async with serve(stalled) as server:
        with pytest.raises(MCPError) as caught:
            await _call(server.port, seconds=0.3)
        with anyio.fail_after(5):
            await left.wait()
    assert caught.value.code == REQUEST_TIMEOUT
