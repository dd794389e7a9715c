"""Benchmark section: one 200 MB upload over loopback, then its download; MB/s and the server's RSS growth.

The upload streams from this process in 1 MiB pieces (never built whole here either) with a
Content-Length; the server streams it through the multipart parser into a temporary file. The
server's RSS (all its workers) is sampled every 20 ms from /proc/<pid>/status during each transfer; the row is the
peak growth over the RSS just before it (target: < 20 MB, i.e. the body is never held in memory).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

from benchlib import KeepAlive, server_rss_kib

TITLE = "files"
UPLOAD_MB = 200
PIECE = 1024 * 1024
BOUNDARY = "benchUploadBoundary7d1f"
SAMPLE_S = 0.02


def server_env(tmp: Path) -> dict[str, str]:
    return {"ROSETTA_FILES_MAX_UPLOAD_MB": str(UPLOAD_MB + 16), "ROSETTA_FILES_QUOTA_MB": "0"}


class RssWatch:
    """Peak RSS of the server (all its workers) while a transfer runs."""

    def __init__(self) -> None:
        self.base = server_rss_kib()
        self.peak = self.base
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, server_rss_kib())
            await asyncio.sleep(SAMPLE_S)

    def __enter__(self) -> RssWatch:
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    def growth(self) -> str:
        return f"{(self.peak - self.base) / 1024:.1f} MB" if self.base else "server pid not found"


async def upload(base_url: str, token: str, piece: bytes, count: int) -> tuple[int, bytes, float]:
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    opening = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
               "Content-Type: application/octet-stream\r\n\r\n").encode()
    closing = f"\r\n--{BOUNDARY}--\r\n".encode()
    length = len(opening) + len(piece) * count + len(closing)
    head = (f"POST /api/v1/files HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {length}\r\n\r\n")
    started = time.perf_counter()
    writer.write(head.encode() + opening)
    for _ in range(count):
        writer.write(piece)
        await writer.drain()
    writer.write(closing)
    await writer.drain()
    status_line = await reader.readline()
    body_length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            body_length = int(value)
    body = await reader.readexactly(body_length)
    elapsed = time.perf_counter() - started
    writer.close()
    return int(status_line.split()[1]), body, elapsed


async def download(base_url: str, token: str, file_id: str) -> tuple[int, str, float]:
    """Read the download in 1 MiB reads, hashing it, never holding it whole."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    started = time.perf_counter()
    writer.write((f"GET /api/v1/files/{file_id}/download HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                  f"Authorization: Bearer {token}\r\n\r\n").encode())
    await writer.drain()
    await reader.readline()
    remaining = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            remaining = int(value)
    digest = hashlib.sha256()
    total = 0
    while remaining:
        block = await reader.read(min(PIECE, remaining))
        if not block:
            break
        digest.update(block)
        remaining -= len(block)
        total += len(block)
    elapsed = time.perf_counter() - started
    writer.close()
    return total, digest.hexdigest(), elapsed


async def run(base_url: str, tmp: Path) -> list[tuple[str, str, str]]:
    client = KeepAlive(base_url)
    status, data = await client.json("POST", "/api/v1/auth/app/register", {
        "name": "Bench", "email": "bench@example.test", "password": "correct-horse-1",
        "password_confirmation": "correct-horse-1", "preferred_language": "en", "device_name": "bench",
    })
    await client.close()
    assert status == 200, data
    token = data["access_token"]
    piece = os.urandom(PIECE)  # incompressible, and one piece reused: the client holds 1 MiB
    with RssWatch() as up_watch:
        status, body, up_s = await upload(base_url, token, piece, UPLOAD_MB)
    if status != 201:
        return [("200 MB upload", f"failed: HTTP {status} {body[:200]!r}", "")]
    file = json.loads(body)["data"]
    whole = hashlib.sha256()
    for _ in range(UPLOAD_MB):
        whole.update(piece)
    with RssWatch() as down_watch:
        total, digest, down_s = await download(base_url, token, file["id"])
    intact = total == UPLOAD_MB * PIECE and digest == whole.hexdigest()
    return [
        ("200 MB upload over loopback", f"{UPLOAD_MB / up_s:.0f} MB/s ({up_s:.2f} s)", ""),
        ("server RSS growth during the upload", up_watch.growth(), "< 20 MB"),
        ("200 MB download over loopback", f"{UPLOAD_MB / down_s:.0f} MB/s ({down_s:.2f} s)"
         + ("" if intact else " — BYTES DIFFER"), ""),
        ("server RSS growth during the download", down_watch.growth(), "< 20 MB"),
    ]
