"""The blob store: uploaded bytes on disk under random names, and the temporary files uploads stream into.

Layout under ``<data_dir>/files/``: ``<32 hex>`` the bytes of one file, ``thumbs/<32 hex>.png`` its
thumbnail, ``.tmp/`` uploads in progress (same file system, so finishing one is an atomic rename).
Owns paths and file-system calls only; which names are live is the database's answer, given in.
All methods are blocking and cheap, except ``remove``/``reconcile`` on many files: call those off the loop.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import BinaryIO

_NAME_RE = re.compile(r"^[0-9a-f]{32}$")


class BlobStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "files"
        self.tmp = self.root / ".tmp"
        self.thumbs = self.root / "thumbs"

    def ensure(self) -> None:
        for folder in (self.root, self.tmp, self.thumbs):
            folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def new_name() -> str:
        """A random storage name: 128 bits, unrelated to the file's id or its client name."""
        return secrets.token_hex(16)

    def path(self, name: str) -> Path:
        if not _NAME_RE.match(name):  # a storage name never comes from a client, but never trust a path
            raise ValueError(f"not a storage name: {name!r}")
        return self.root / name

    def thumbnail_path(self, name: str) -> Path:
        return self.thumbs / f"{self.path(name).name}.png"

    def open_temp(self) -> tuple[Path, BinaryIO]:
        """A new temporary file for an upload in progress, opened for writing."""
        path = self.tmp / f"{self.new_name()}.part"
        return path, open(path, "xb")  # the receiver owns and closes it

    def install(self, temp: Path, name: str) -> Path:
        """Move a finished upload to its storage name (atomic on one file system)."""
        target = self.path(name)
        os.replace(temp, target)
        return target

    def remove(self, names: list[str]) -> None:
        """Remove the bytes and thumbnails of ``names``; already gone is fine (idempotent)."""
        for name in names:
            self.path(name).unlink(missing_ok=True)
            self.thumbnail_path(name).unlink(missing_ok=True)

    def stored_names(self) -> set[str]:
        """Every storage name with bytes on disk."""
        return {entry.name for entry in os.scandir(self.root) if entry.is_file() and _NAME_RE.match(entry.name)}

    def reconcile(self, live: set[str]) -> tuple[list[str], list[str]]:
        """Remove bytes, thumbnails and temporary files no live row owns; return (removed, missing).

        ``missing`` are live names whose bytes are gone: the caller soft-deletes their rows. Run only
        when no upload is in progress (at start-up), since an upload's bytes land before its row.
        """
        self.ensure()
        for entry in os.scandir(self.tmp):
            if entry.is_file():
                os.unlink(entry.path)
        stored = self.stored_names()
        removed = sorted(stored - live)
        for name in removed:
            self.path(name).unlink(missing_ok=True)
        for entry in os.scandir(self.thumbs):
            stem = entry.name.removesuffix(".png")
            if entry.is_file() and (stem not in live or stem not in stored or not entry.name.endswith(".png")):
                os.unlink(entry.path)
        return removed, sorted(live - stored)
