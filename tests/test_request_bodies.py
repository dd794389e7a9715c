"""Request bodies over raw sockets: a chunked body over a route's limit is refused as it crosses it, a
body that never finishes arriving loses its connection, and page links name the public URL."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.support import register, workspace_with


async def open_raw(server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def read_answer(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[int, dict]:
    """One HTTP answer (status, JSON body), read by its Content-Length; fails if none comes in time."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status = int(head.split(b" ", 2)[1])
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    body = await asyncio.wait_for(reader.readexactly(length), timeout)
    return status, json.loads(body)


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@pytest.mark.parametrize("server_overrides", [{"server": {"max_body_mb": 0.01}}])
@pytest.mark.gen_test(timeout=30)
async def test_a_chunked_json_body_is_refused_with_413_as_it_crosses_the_limit(api, server):
    ana = await register(api, "Ana")
    reader, writer = await open_raw(server)
    try:
        writer.write(f"POST /api/v1/workspaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ana.token}\r\n"
                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        # ~12 KB against a 0.01 MB (~10 KB) limit, and the body is never ended: an answer can only come
        # from refusing it mid-body, not from reading on to the server-wide limit (the upload size).
        writer.write(chunk(b'{"name": "' + b"x" * 12_000))
        await writer.drain()
        status, body = await read_answer(reader)
    finally:
        writer.close()
    assert status == 413 and body["message"]
    listed = await api.get("/workspaces", token=ana.token)
    assert listed.json["data"] == []  # nothing was created


@pytest.mark.gen_test(timeout=30)
async def test_a_body_that_never_finishes_arriving_loses_its_connection(api, server):
    server.app.body_timeout_s = 0.2  # the fixed part of the deadline; 40 bytes add ~1 ms at the slowest rate
    reader, writer = await open_raw(server)
    began = time.monotonic()
    try:
        writer.write(b"POST /api/v1/auth/app/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 40\r\n\r\n{\"email\":")  # a public route; 9 of the 40 bytes, then nothing
        await writer.drain()
        closed = await asyncio.wait_for(reader.read(), 10)  # everything until the server closes
    finally:
        writer.close()
    assert closed == b""  # no answer: the connection was dropped
    assert time.monotonic() - began < 5  # by the body deadline, not the 120 s idle timeout
    # A body that does arrive in time is still answered.
    ok = await api.post("/auth/app/login", {"email": "nobody@example.test", "password": "whatever-1"})
    assert ok.status == 422, ok


@pytest.mark.parametrize("server_overrides", [{"server": {"public_url": "https://chat.example.test/"}}])
@pytest.mark.gen_test(timeout=30)
async def test_page_links_name_the_public_url_not_the_requests_host(api, server):
    ana, bo = await register(api, "Ana"), await register(api, "Bo")
    team = await workspace_with(api, ana, bo)
    listed = await api.get(f"/workspaces/{team['id']}/members?per_page=1", token=ana.token,
                           headers={"Host": "evil.example"})
    assert listed.status == 200, listed
    links = listed.json["links"]
    expected = f"https://chat.example.test/api/v1/workspaces/{team['id']}/members?"
    assert links["first"].startswith(expected) and links["next"].startswith(expected), links
    assert "per_page=1" in links["next"] and "page=2" in links["next"]
