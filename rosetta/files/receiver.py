"""One upload in progress: multipart pieces in, the ``file`` part streamed to a temporary file, hashed as it goes.

Owns the upload's bounds (``max_file_bytes`` for the file, small bounds for the other fields) and the
temporary file's life: ``discard()`` removes it on every failure path. ``feed`` is blocking (a write
and a hash per piece) and is run off the event loop by the handler, one piece at a time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from rosetta.files.blobs import BlobStore
from rosetta.files.multipart import MultipartError, PartData, PartEnd, PartStart, StreamingMultipartParser
from rosetta.files.sniff import HEAD_BYTES

FILE_FIELD = "file"
# The upload form's fields besides the file (api.md: file + visibility). Other parts are skipped
# unread: their names are the client's, so they neither become error keys nor count against a bound.
FORM_FIELDS = frozenset({"visibility"})
MAX_FIELD_BYTES = 1024  # visibility and friends are a few bytes; anything bigger is not a real form


class UploadTooLarge(Exception):
    """The file part crossed the upload limit."""


class UploadInvalid(Exception):
    """The form is malformed or misses its file; ``field`` names what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


@dataclass
class Received:
    temp_path: Path
    client_name: str | None
    size: int
    sha256: str
    head: bytes  # the first bytes, for sniffing
    fields: dict[str, str] = field(default_factory=dict)


class UploadReceiver:
    def __init__(self, blobs: BlobStore, boundary: bytes, max_file_bytes: int) -> None:
        self._blobs = blobs
        self._parser = StreamingMultipartParser(boundary)
        self._max = max_file_bytes
        self._fields: dict[str, str] = {}
        self._current: str | None = None  # the part being read: FILE_FIELD, a field name, or "" (ignored)
        self._field_bytes = bytearray()
        self._temp_path: Path | None = None
        self._temp: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self._size = 0
        self._head = bytearray()
        self._client_name: str | None = None
        self._file_done = False

    @property
    def temp_path(self) -> Path | None:
        return self._temp_path

    def feed(self, piece: bytes) -> None:
        """Consume one piece of the body; raises UploadTooLarge or UploadInvalid."""
        try:
            events = self._parser.feed(piece)
        except MultipartError as exc:
            raise UploadInvalid(FILE_FIELD, str(exc)) from None
        for event in events:
            if isinstance(event, PartData):
                self._data(event.data)
            elif isinstance(event, PartStart):
                self._start(event)
            elif isinstance(event, PartEnd):
                self._end()

    def _start(self, part: PartStart) -> None:
        if part.name == FILE_FIELD and part.filename is not None:
            if self._temp is not None or self._file_done:
                raise UploadInvalid(FILE_FIELD, "Send exactly one file.")
            self._temp_path, self._temp = self._blobs.open_temp()
            self._client_name = part.filename
            self._current = FILE_FIELD
        else:
            self._current = part.name if part.name in FORM_FIELDS else ""
            self._field_bytes.clear()

    def _data(self, data: bytes) -> None:
        if self._current == FILE_FIELD:
            assert self._temp is not None
            self._size += len(data)
            if self._size > self._max:
                raise UploadTooLarge()
            if len(self._head) < HEAD_BYTES:
                self._head += data[: HEAD_BYTES - len(self._head)]
            self._hash.update(data)
            self._temp.write(data)
        elif self._current:
            self._field_bytes += data
            if len(self._field_bytes) > MAX_FIELD_BYTES:
                raise UploadInvalid(self._current, "The field is too long.")

    def _end(self) -> None:
        if self._current == FILE_FIELD:
            assert self._temp is not None
            self._temp.close()
            self._temp = None
            self._file_done = True
        elif self._current and self._current not in self._fields:
            try:
                self._fields[self._current] = self._field_bytes.decode("utf-8")
            except UnicodeDecodeError:
                raise UploadInvalid(self._current, "The field must be UTF-8 text.") from None
        self._current = None

    def finish(self) -> Received:
        """The body ended: the upload, with its temporary file closed; raises UploadInvalid."""
        try:
            self._parser.close()
        except MultipartError as exc:
            raise UploadInvalid(FILE_FIELD, str(exc)) from None
        if not self._file_done or self._temp_path is None:
            raise UploadInvalid(FILE_FIELD, "The file field is required.")
        return Received(self._temp_path, self._client_name, self._size, self._hash.hexdigest(), bytes(self._head),
                        dict(self._fields))

    def discard(self) -> None:
        """Close and remove the temporary file (idempotent); the upload is abandoned."""
        if self._temp is not None:
            self._temp.close()
            self._temp = None
        if self._temp_path is not None:
            self._temp_path.unlink(missing_ok=True)
            self._temp_path = None
