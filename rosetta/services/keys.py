"""The application key: signs verification links and XSRF tokens, keys the HMAC of one-time codes.

``auth.app_key`` when configured; otherwise a random key generated once into the data directory
(``app_key``, mode 0600), so links and codes survive a restart without any setup.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from rosetta.config import Config

KEY_FILE = "app_key"


class AppKey:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._key: bytes | None = None

    def get(self) -> bytes:
        if self._key is None:
            self._key = self._load()
        return self._key

    def _load(self) -> bytes:
        if self.config.auth.app_key:
            return self.config.auth.app_key.encode("utf-8")
        path = Path(self.config.data_dir) / KEY_FILE
        if path.is_file():
            return path.read_text(encoding="ascii").strip().encode("ascii")
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = secrets.token_hex(32)
        # Written whole under another name, then linked into place: link() fails if the key exists, so
        # two processes starting together agree on one key, and neither can read a half-written file.
        staged = path.with_name(f"{KEY_FILE}.{os.getpid()}.tmp")
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(fresh)
        try:
            os.link(staged, path)
        except FileExistsError:
            return path.read_text(encoding="ascii").strip().encode("ascii")
        finally:
            staged.unlink()
        return fresh.encode("ascii")

    def sign(self, purpose: str, value: str) -> str:
        """HMAC-SHA256 of ``value`` under a purpose label (a signature for one use is useless for another)."""
        return hmac.new(self.get(), f"{purpose}\n{value}".encode(), hashlib.sha256).hexdigest()

    def verify(self, purpose: str, value: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(purpose, value).encode("ascii"),
                                   signature.encode("ascii", "replace"))
