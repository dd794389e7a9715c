"""Uploads and downloads over real HTTP: streaming, limits, names, safe headers, ranges, thumbnails, quota."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import zlib
from pathlib import Path

import pytest
from PIL import Image

from tests.support import register

BOUNDARY = "rosettaTestBoundary0123456789"
LIMIT_MB = 0.25  # a small upload limit keeps the over-limit tests fast
LIMIT_BYTES = int(LIMIT_MB * 1024 * 1024)


def multipart(content: bytes, filename: str | None = "data.bin", *, visibility: str | None = None,
              filename_star: str | None = None, content_type: str = "application/octet-stream") -> bytes:
    out = b""
    if visibility is not None:
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"visibility\"\r\n\r\n{visibility}\r\n").encode()
    disposition = 'form-data; name="file"'
    if filename is not None:
        disposition += '; filename="' + filename.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if filename_star is not None:
        disposition += "; filename*=" + filename_star
    out += (f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\nContent-Type: {content_type}\r\n\r\n").encode()
    return out + content + f"\r\n--{BOUNDARY}--\r\n".encode()


async def upload(api, user, content: bytes, filename: str | None = "data.bin", **kw):
    return await api.post("/files", token=user.token, raw=multipart(content, filename, **kw),
                          headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})


def png_bytes(width: int = 800, height: int = 600) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", (width, height), (30, 120, 200))
    image.paste((255, 0, 0), (0, 0, width // 2, height))  # left half red, right half blue
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header claiming 10 gigapixels, followed by a tiny compressed stream."""
    ihdr = b"IHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    idat = b"IDAT" + zlib.compress(b"\x00" * 1024)
    end = b"IEND"
    return (b"\x89PNG\r\n\x1a\n"
            + b"".join(len(c[4:]).to_bytes(4, "big") + c + zlib.crc32(c).to_bytes(4, "big") for c in (ihdr, idat, end)))


def files_on_disk(server) -> list[str]:
    """Every file under <data_dir>/files (bytes, thumbnails, temporary uploads), relative."""
    root = Path(server.config.data_dir) / "files"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.gen_test(timeout=30)
async def test_byte_exact_round_trip_with_safe_headers(api, server):
    ana = await register(api, "Ana")
    # Random bytes with a near-delimiter inside: the parser must not cut there.
    content = os.urandom(200_000) + b"\r\n--" + BOUNDARY[:-1].encode() + b"\r\n" + os.urandom(50)
    response = await upload(api, ana, content, "report.bin", content_type="image/png")
    assert response.status == 201, response
    data = response.json["data"]
    assert data["client_name"] == "report.bin" and data["size"] == len(content)
    assert data["mime_type"] == "application/octet-stream"  # the client's claim (image/png) is ignored
    assert data["visibility"] == "private" and data["claimed"] is False
    assert data["expires_at"] == "2026-11-22T12:00:00.000000+00:00"  # START + files.staging_ttl_hours (24)
    assert set(data) == {"id", "client_name", "mime_type", "size", "visibility", "claimed", "expires_at",
                         "created_at"}
    shown = await api.get(f"/files/{data['id']}", token=ana.token)
    assert shown.status == 200 and shown.json["data"] == data
    download = await api.get(f"/files/{data['id']}/download", token=ana.token)
    assert download.status == 200
    assert download.body == content
    headers = download.headers
    assert headers["Content-Length"] == str(len(content))
    assert headers["ETag"] == f'"{hashlib.sha256(content).hexdigest()}"'
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == "sandbox"
    assert headers["Content-Disposition"] == "attachment; filename=\"report.bin\"; filename*=UTF-8''report.bin"
    assert headers["Content-Type"] == "application/octet-stream"
    # The stored bytes sit under a random name, nothing like the client's.
    stored = [name for name in files_on_disk(server) if "/" not in name]
    assert len(stored) == 1 and "report" not in stored[0] and data["id"] not in stored[0]
    cached = await api.get(f"/files/{data['id']}/download", token=ana.token,
                           headers={"If-None-Match": headers["ETag"]})
    assert cached.status == 304 and cached.body == b""


@pytest.mark.gen_test(timeout=30)
async def test_range_requests(api):
    ana = await register(api, "Ana")
    content = bytes(range(256)) * 40
    file_id = (await upload(api, ana, content)).json["data"]["id"]
    path = f"/files/{file_id}/download"
    part = await api.get(path, token=ana.token, headers={"Range": "bytes=10-19"})
    assert part.status == 206 and part.body == content[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(content)}" and part.headers["Content-Length"] == "10"
    tail = await api.get(path, token=ana.token, headers={"Range": "bytes=-5"})
    assert tail.status == 206 and tail.body == content[-5:]
    rest = await api.get(path, token=ana.token, headers={"Range": f"bytes={len(content) - 3}-"})
    assert rest.status == 206 and rest.body == content[-3:]
    beyond = await api.get(path, token=ana.token, headers={"Range": f"bytes={len(content)}-"})
    assert beyond.status == 416 and beyond.headers["Content-Range"] == f"bytes */{len(content)}"
    stale = await api.get(path, token=ana.token, headers={"Range": "bytes=0-1", "If-Range": '"old"'})
    assert stale.status == 200 and stale.body == content
    # More digits than int() takes (4,300): malformed, so ignored. It was a 500, public files' too.
    for endless in ("bytes=" + "9" * 5000 + "-", "bytes=-" + "9" * 5000, "bytes=0-" + "9" * 5000):
        whole = await api.get(path, token=ana.token, headers={"Range": endless})
        assert whole.status == 200 and whole.body == content
    far = await api.get(path, token=ana.token, headers={"Range": "bytes=0-" + "9" * 18})
    assert far.status == 206 and far.body == content


@pytest.fixture
def server_overrides():
    return {"files": {"max_upload_mb": LIMIT_MB}}


async def raw_exchange(server, head: bytes, pieces: list[bytes]) -> tuple[int, dict]:
    """Send a request by hand (pieces as they come), stop sending, and read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    raw = b""
    try:
        writer.write(head)
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
        while True:
            try:
                block = await asyncio.wait_for(reader.read(65536), timeout=10)
            except ConnectionResetError:
                break  # the server closed with our unread bytes in its buffer; its answer arrived first
            if not block:
                break
            raw += block
    finally:
        writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(payload)


@pytest.mark.gen_test(timeout=30)
async def test_over_the_limit_by_content_length_is_refused_before_the_body(api, server):
    ana = await register(api, "Ana")
    head = (f"POST /api/v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ana.token}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {LIMIT_BYTES * 4}\r\n\r\n")
    status, body = await raw_exchange(server, head.encode(), [])
    assert status == 413 and body["message"]
    assert files_on_disk(server) == []


@pytest.mark.gen_test(timeout=30)
async def test_crossing_the_limit_mid_stream_answers_413_and_removes_the_partial_file(api, server):
    ana = await register(api, "Ana")
    head = (f"POST /api/v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ana.token}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nTransfer-Encoding: chunked\r\n\r\n")
    opening = multipart(b"", "big.bin").split(b"\r\n--" + BOUNDARY.encode() + b"--")[0]

    def chunk(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    pieces = [chunk(opening)] + [chunk(b"x" * 65536) for _ in range(LIMIT_BYTES // 65536 + 1)]
    status, body = await raw_exchange(server, head.encode(), pieces)
    assert status == 413 and "file" in body["errors"]
    assert files_on_disk(server) == []  # the temporary file is gone, and nothing was stored
    # One byte under the limit still goes through, through the same streaming path.
    ok = await upload(api, ana, b"y" * LIMIT_BYTES)
    assert ok.status == 201, ok
    over = await upload(api, ana, b"y" * (LIMIT_BYTES + 1))
    assert over.status == 413 and over.json["errors"]["file"]
    assert len([n for n in files_on_disk(server) if n.startswith(".tmp")]) == 0


@pytest.mark.gen_test(timeout=30)
async def test_hostile_file_names_are_stored_and_served_safely(api):
    ana = await register(api, "Ana")
    cases = [
        ({"filename": "../../etc/passwd"}, "passwd", 'filename="passwd"'),
        ({"filename": None, "filename_star": "UTF-8''a%0D%0Ab.txt"}, "ab.txt", 'filename="ab.txt"'),
        ({"filename": "invoice\u202etxt.exe"}, "invoicetxt.exe", 'filename="invoicetxt.exe"'),
        ({"filename": "\u2067evil\u2069\u202d.pdf"}, "evil.pdf", 'filename="evil.pdf"'),
        ({"filename": "x" * 10_000 + ".txt"}, "x" * 251 + ".txt", 'filename="' + "x" * 251 + '.txt"'),
        ({"filename": 'q"uote;%.txt'}, 'q"uote;%.txt', 'filename="q_uote__.txt"'),
    ]
    for options, stored, fallback in cases:
        filename = options.pop("filename")
        response = await upload(api, ana, b"hello", filename, **options)
        assert response.status == 201, (filename, response)
        data = response.json["data"]
        assert data["client_name"] == stored
        download = await api.get(f"/files/{data['id']}/download", token=ana.token)
        disposition = download.headers["Content-Disposition"]
        assert disposition.startswith("attachment; ") and fallback in disposition
        assert "/" not in disposition.split("filename*=")[0]
        assert not any(ch in disposition for ch in "\r\n\u202e\u2067\u2069")
        assert download.body == b"hello"


@pytest.mark.gen_test(timeout=30)
async def test_svg_with_script_is_served_as_a_sandboxed_attachment(api):
    ana = await register(api, "Ana")
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>'
    response = await upload(api, ana, svg, "cute.svg", content_type="image/png", visibility="public")
    assert response.status == 201 and response.json["data"]["mime_type"] == "image/svg+xml"
    download = await api.get(f"/files/{response.json['data']['id']}/download")  # public: no credential
    assert download.status == 200 and download.body == svg
    assert download.headers["Content-Type"] == "image/svg+xml"
    assert download.headers["Content-Disposition"].startswith('attachment; filename="cute.svg"')
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.headers["Content-Security-Policy"] == "sandbox"


@pytest.mark.gen_test(timeout=30)
async def test_public_private_and_owner_access(api):
    ana, bob = await register(api, "Ana"), await register(api, "Bob")
    private = (await upload(api, ana, b"secret")).json["data"]["id"]
    public = (await upload(api, ana, b"open", visibility="public")).json["data"]["id"]
    assert (await api.get(f"/files/{public}/download")).body == b"open"
    assert (await api.get(f"/files/{public}/download", token=bob.token)).status == 200
    assert (await api.get(f"/files/{private}/download")).status == 401
    assert (await api.get(f"/files/{private}/download", token=bob.token)).status == 404
    assert (await api.get(f"/files/{private}", token=bob.token)).status == 404
    assert (await api.get(f"/files/{public}", token=bob.token)).status == 404  # metadata is the owner's
    assert (await api.delete(f"/files/{private}", token=bob.token)).status == 404
    assert (await api.get("/files/not-an-id/download", token=ana.token)).status == 404
    bad = await upload(api, ana, b"x", visibility="everyone")
    assert bad.status == 422 and "visibility" in bad.json["errors"]
    empty = await upload(api, ana, b"")
    assert empty.status == 422 and "file" in empty.json["errors"]
    not_multipart = await api.post("/files", {"file": "x"}, token=ana.token)
    assert not_multipart.status == 422 and "file" in not_multipart.json["errors"]
    truncated = await api.post("/files", token=ana.token, raw=multipart(b"abc")[:-10],
                               headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert truncated.status == 422 and "file" in truncated.json["errors"]
    assert (await api.post("/files", raw=multipart(b"abc"))).status == 401


@pytest.mark.gen_test(timeout=30)
async def test_delete_soft_deletes_then_removes_bytes(api, server):
    ana = await register(api, "Ana")
    file_id = (await upload(api, ana, b"bye")).json["data"]["id"]
    assert len(files_on_disk(server)) == 1
    assert (await api.delete(f"/files/{file_id}", token=ana.token)).status == 204
    assert files_on_disk(server) == []
    assert (await api.get(f"/files/{file_id}", token=ana.token)).status == 404
    assert (await api.delete(f"/files/{file_id}", token=ana.token)).status == 404
    row = await server.app.db.reader.fetch_one("SELECT deleted_at FROM files WHERE id = ?", (file_id,))
    assert row["deleted_at"] is not None  # the row stays, soft-deleted


@pytest.mark.gen_test(timeout=30)
async def test_thumbnail_of_a_real_png(api, server):
    ana = await register(api, "Ana")
    file_id = (await upload(api, ana, png_bytes(800, 600), "photo.png")).json["data"]["id"]
    thumb = await api.get(f"/files/{file_id}/thumbnail", token=ana.token)
    assert thumb.status == 200 and thumb.headers["Content-Type"] == "image/png"
    with Image.open(io.BytesIO(thumb.body)) as image:
        assert image.size == (320, 240)
        assert image.getpixel((0, 0))[:3] == (255, 0, 0) and image.getpixel((319, 239))[:3] == (30, 120, 200)
    text_id = (await upload(api, ana, b"not an image", "a.txt")).json["data"]["id"]
    assert (await api.get(f"/files/{text_id}/thumbnail", token=ana.token)).status == 404


@pytest.mark.gen_test(timeout=30)
async def test_decompression_bomb_gets_no_thumbnail_but_stays_downloadable(api):
    ana = await register(api, "Ana")
    bomb = bomb_png()
    response = await upload(api, ana, bomb, "bomb.png")
    assert response.status == 201 and response.json["data"]["mime_type"] == "image/png"
    file_id = response.json["data"]["id"]
    assert (await api.get(f"/files/{file_id}/thumbnail", token=ana.token)).status == 404
    assert (await api.get(f"/files/{file_id}/download", token=ana.token)).body == bomb


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("server_overrides", [{"files": {"quota_mb": 0.001}}])  # 1048 bytes
async def test_quota_is_enforced_per_user(api, server):
    ana, bob = await register(api, "Ana"), await register(api, "Bob")
    first = await upload(api, ana, b"a" * 1000)
    assert first.status == 201
    over = await upload(api, ana, b"b" * 100)
    assert over.status == 422 and "quota" in over.json["errors"]["file"][0]
    assert len(files_on_disk(server)) == 1  # the refused upload left nothing behind
    assert (await upload(api, bob, b"c" * 1000)).status == 201  # quotas are per user
    assert (await api.delete(f"/files/{first.json['data']['id']}", token=ana.token)).status == 204
    assert (await upload(api, ana, b"b" * 100)).status == 201  # deleting frees the space


@pytest.mark.gen_test(timeout=30)
async def test_parts_the_form_does_not_define_are_skipped_and_never_name_an_error(api, server):
    ana = await register(api, "Ana")
    caption = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"caption\"\r\n\r\n" + "c" * 2000 + "\r\n"
               f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{'n' * 3000}\"\r\n\r\n" + "d" * 2000 + "\r\n")
    form = caption.encode() + multipart(b"hello", "note.txt", visibility="public")
    stored = await api.post("/files", token=ana.token, raw=form,
                            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert stored.status == 201, stored  # a long caption (2,000 bytes, over the 1 KiB field bound) is ignored
    assert stored.json["data"]["visibility"] == "public"  # the form's own field is still read
    # A "file" part that is not a file (no filename) is not the file: the file is missing, said under "file".
    not_a_file = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n" + "x" * 2000
                  + f"\r\n--{BOUNDARY}--\r\n").encode()
    refused = await api.post("/files", token=ana.token, raw=not_a_file,
                             headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert refused.status == 422 and list(refused.json["errors"]) == ["file"], refused
    assert "required" in refused.json["errors"]["file"][0]
