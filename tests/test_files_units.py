"""Unit tests for the pure parts of file handling: the streaming multipart parser, sniffing, names, ranges."""

from __future__ import annotations

import io
import random
import zlib

import pytest
from PIL import Image

from rosetta.files import images
from rosetta.files.multipart import (
    MultipartError,
    PartData,
    PartEnd,
    PartStart,
    StreamingMultipartParser,
    boundary_of,
    parse_header_params,
)
from rosetta.files.names import ascii_fallback, clean_name, content_disposition
from rosetta.files.sniff import sniff
from rosetta.handlers.downloads import UNSATISFIABLE, etag_matches, parse_range

BOUNDARY = b"----rosettaBoundary7MA4YWxk"


def body(*parts: tuple[bytes, bytes], boundary: bytes = BOUNDARY, preamble: bytes = b"") -> bytes:
    out = preamble
    for headers, content in parts:
        out += b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + content + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def collect(raw: bytes, piece_sizes: list[int]) -> list[tuple[str, object]]:
    """Feed ``raw`` in pieces; merge consecutive data events so results compare across splittings."""
    parser = StreamingMultipartParser(BOUNDARY)
    events = []
    at = 0
    sizes = iter(piece_sizes)
    while at < len(raw):
        size = next(sizes, len(raw))
        events.extend(parser.feed(raw[at:at + size]))
        at += size
    parser.close()
    merged: list[tuple[str, object]] = []
    for event in events:
        if isinstance(event, PartData):
            if merged and merged[-1][0] == "data":
                merged[-1] = ("data", merged[-1][1] + event.data)  # type: ignore[operator]
            else:
                merged.append(("data", event.data))
        elif isinstance(event, PartStart):
            merged.append(("start", (event.name, event.filename, event.content_type)))
        elif isinstance(event, PartEnd):
            merged.append(("end", None))
    return merged


def test_parser_yields_the_same_parts_however_the_body_is_split():
    # File content that contains near-boundaries: CRLF, dashes, and the boundary without its CRLF.
    content = b"\r\n--" + BOUNDARY[:-1] + b"x\r\n-" + bytes(range(256)) * 40 + b"--" + BOUNDARY
    raw = body(
        (b'Content-Disposition: form-data; name="visibility"', b"public"),
        (b'Content-Disposition: form-data; name="file"; filename="a.bin"\r\nContent-Type: text/plain', content),
        preamble=b"ignored preamble\r\n",
    )
    expected = [
        ("start", ("visibility", None, None)), ("data", b"public"), ("end", None),
        ("start", ("file", "a.bin", "text/plain")), ("data", content), ("end", None),
    ]
    assert collect(raw, [len(raw)]) == expected
    assert collect(raw, [1] * len(raw)) == expected  # byte by byte
    rng = random.Random(5)
    for _ in range(50):
        sizes = [rng.randint(1, 300) for _ in range(len(raw))]
        assert collect(raw, sizes) == expected


def test_parser_handles_empty_parts_and_the_epilogue():
    raw = body((b'Content-Disposition: form-data; name="file"; filename="empty.txt"', b"")) + b"epilogue junk"
    assert collect(raw, [7] * 100) == [("start", ("file", "empty.txt", None)), ("end", None)]


@pytest.mark.parametrize("raw", [
    b"--" + BOUNDARY + b"\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno closing boundary",
    b"--" + BOUNDARY + b"\r\nNo-Colon-Here\r\n\r\nx\r\n--" + BOUNDARY + b"--",
    b"--" + BOUNDARY + b"\r\nContent-Type: text/plain\r\n\r\nx\r\n--" + BOUNDARY + b"--",
    b"--" + BOUNDARY + b"\r\nContent-Disposition: form-data; name=\"a\"\r\n" + b"X-Pad: " + b"a" * 20000,
    b"--" + BOUNDARY + b"garbage\r\n",
])
def test_parser_refuses_malformed_bodies(raw):
    parser = StreamingMultipartParser(BOUNDARY)
    with pytest.raises(MultipartError):
        parser.feed(raw)
        parser.close()


def test_parser_bounds_the_number_of_parts():
    raw = body(*[(b'Content-Disposition: form-data; name="f"', b"x")] * 40)
    with pytest.raises(MultipartError):
        StreamingMultipartParser(BOUNDARY).feed(raw)


def test_boundary_and_disposition_parameters():
    assert boundary_of('multipart/form-data; boundary="abc def"') == b"abc def"
    assert boundary_of("multipart/form-data; boundary=xyz") == b"xyz"
    assert boundary_of("application/json") is None
    assert boundary_of("multipart/form-data") is None
    assert boundary_of("multipart/form-data; boundary=" + "x" * 71) is None
    kind, params = parse_header_params(
        'form-data; name="file"; filename="a\\"b;c.txt"; filename*=UTF-8\'\'%E2%82%AC%0D%0A.txt')
    assert kind == "form-data" and params["name"] == "file"
    assert params["filename"] == "\u20ac\r\n.txt"  # filename* wins over filename
    _, params = parse_header_params('form-data; name="f"; filename="C:\\Users\\me\\a.txt"')
    assert params["filename"] == "C:\\Users\\me\\a.txt"


def _png(width: int = 4, height: int = 3) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(("head", "mime"), [
    (_png(), "image/png"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
    (b"GIF89a\x01\x00", "image/gif"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
    (b"%PDF-1.7\n", "application/pdf"),
    (b"PK\x03\x04\x14\x00", "application/zip"),
    (b'<?xml version="1.0"?>\n<!DOCTYPE svg>\n<svg xmlns="http://www.w3.org/2000/svg">', "image/svg+xml"),
    (b"  <SVG onload=alert(1)>", "image/svg+xml"),
    (b'<?xml version="1.0"?><feed/>', "application/xml"),
    (b"<!DOCTYPE html><html>", "text/html"),
    ("plain text, ünïcode ✓".encode(), "text/plain"),
    ("✓".encode()[:2], "text/plain"),  # a multibyte character cut by the head
    (b"\x00\x01\x02binary", "application/octet-stream"),
    (b"\xff\xfe\xfd not utf-8", "application/octet-stream"),
    (b"", "application/octet-stream"),
])
def test_sniff_decides_from_bytes(head, mime):
    assert sniff(head) == mime


def test_clean_name_keeps_metadata_safe():
    assert clean_name("../../etc/passwd") == "passwd"
    assert clean_name("C:\\Windows\\system32\\evil.dll") == "evil.dll"
    assert clean_name("a\r\nb.txt") == "ab.txt"
    assert clean_name("invoice\u202etxt.exe") == "invoicetxt.exe"
    assert clean_name("\u2066x\u2069y\u202a.pdf") == "xy.pdf"
    assert clean_name("") == "file" and clean_name(None) == "file" and clean_name("../..") == "file"
    long = clean_name("a" * 10_000 + ".txt")
    assert len(long) == 255 and long.endswith(".txt")
    assert clean_name("שלום.txt") == "שלום.txt"  # right-to-left text itself is fine


def test_content_disposition_is_rfc6266_with_a_safe_fallback():
    header = content_disposition('résumé "final"\r\n\u202e.pdf')
    assert header.startswith("attachment; ")
    assert "\r" not in header and "\n" not in header and "\u202e" not in header
    assert 'filename="resume _final_.pdf"' in header
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf" in header
    assert ascii_fallback("日本語.txt") == "___.txt"
    assert ascii_fallback("../a/b\\c.txt") == "c.txt"
    assert ascii_fallback("50%.txt") == "50_.txt"


def test_range_parsing():
    assert parse_range(None, 100) is None
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=90-", 100) == (90, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=-500", 100) == (0, 99)
    assert parse_range("bytes=50-5000", 100) == (50, 99)
    assert parse_range("bytes=100-", 100) == UNSATISFIABLE
    assert parse_range("bytes=-0", 100) == UNSATISFIABLE
    assert parse_range("bytes=5-2", 100) is None
    assert parse_range("bytes=0-1,5-6", 100) is None
    assert parse_range("items=0-1", 100) is None
    assert etag_matches('W/"abc", "def"', '"abc"') and etag_matches("*", '"x"')
    assert not etag_matches('"abcd"', '"abc"')


def _png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge image: a few dozen bytes that would decode to gigabytes."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + len(ihdr).to_bytes(4, "big") + chunk
            + zlib.crc32(chunk).to_bytes(4, "big"))


def test_images_guard_against_decompression_bombs(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_claiming(100_000, 100_000))
    info = images.inspect(bomb, tmp_path / "bomb.thumb.png", 50_000_000)
    assert not info.thumbnail and not (tmp_path / "bomb.thumb.png").exists()
    big = tmp_path / "big.png"
    big.write_bytes(_png(400, 300))
    info = images.inspect(big, tmp_path / "big.thumb.png", 1000)  # over this server's pixel limit
    assert (info.width, info.height, info.thumbnail) == (400, 300, False)
    info = images.inspect(big, tmp_path / "ok.thumb.png", 50_000_000)
    assert (info.width, info.height, info.thumbnail) == (400, 300, True)
    with Image.open(tmp_path / "ok.thumb.png") as thumb:
        assert thumb.size == (320, 240)
    broken = tmp_path / "broken.png"
    broken.write_bytes(_png()[:30])
    assert images.inspect(broken, tmp_path / "broken.thumb.png", 50_000_000) == images.NO_IMAGE
