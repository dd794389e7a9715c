"""Files: staging uploads, the quota, owner access, soft delete, the TTL sweep and the start-up reconcile.

Owns the life of a file: bytes land under a random name before the row exists (so a crash leaves
orphan bytes, which the reconcile removes, never a row without bytes), and a row is soft-deleted
before its bytes are removed (so a crash leaves a dead row's bytes, which the reconcile also removes).
Claiming by messages lives in ``services.attachments``.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

from rosetta.clock import iso
from rosetta.errors import Invalid, NotFound, Unauthenticated
from rosetta.files import images
from rosetta.files.blobs import BlobStore
from rosetta.files.names import clean_name
from rosetta.files.receiver import Received, UploadReceiver
from rosetta.files.sniff import IMAGE_TYPES, sniff
from rosetta.ids import looks_like_id, new_id
from rosetta.services.auth import Principal
from rosetta.services.context import Context
from rosetta.store import files as file_store
from rosetta.store.connections import Tx

MIB = 1024 * 1024
VISIBILITIES = ("private", "public")
QUOTA_MESSAGE = "The file would exceed your storage quota."
SORT_FIELDS = file_store.SORTABLE  # what GET /me/files may sort by


def file_view(row: sqlite3.Row) -> dict[str, Any]:
    """The File resource of the contract."""
    return {
        "id": row["id"],
        "client_name": row["client_name"],
        "mime_type": row["mime_type"],
        "size": row["size"],
        "visibility": row["visibility"],
        "claimed": row["claimed_at"] is not None,
        "expires_at": None if row["claimed_at"] is not None else row["expires_at"],
        "created_at": row["created_at"],
    }


class FileService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.blobs = BlobStore(ctx.config.data_dir)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.ctx.config.files.max_upload_mb * MIB)

    def receiver(self, boundary: bytes) -> UploadReceiver:
        """A receiver for one upload, streaming into the data directory's temporary folder."""
        self.blobs.ensure()
        return UploadReceiver(self.blobs, boundary, self.max_upload_bytes)

    def bytes_path(self, row: sqlite3.Row) -> Path:
        return self.blobs.path(row["storage_name"])

    def thumbnail_path(self, row: sqlite3.Row) -> Path | None:
        return self.blobs.thumbnail_path(row["storage_name"]) if row["has_thumbnail"] else None

    # Upload -------------------------------------------------------------------------------------

    async def stage(self, principal: Principal, received: Received, visibility: str | None) -> dict[str, Any]:
        """Turn a finished upload into a staged file; the temporary file is consumed either way."""
        try:
            return await self._stage(principal, received, visibility)
        finally:
            received.temp_path.unlink(missing_ok=True)  # already moved on success; removed on failure

    async def _stage(self, principal: Principal, received: Received, visibility: str | None) -> dict[str, Any]:
        visibility = (visibility or "private").strip()
        if visibility not in VISIBILITIES:
            raise Invalid.one("visibility", "The selected visibility is invalid.")
        if received.size == 0:
            raise Invalid.one("file", "The file field must not be empty.")
        await self._check_quota(principal, received.size)
        mime_type = sniff(received.head)  # the bytes decide; the part's Content-Type is ignored
        name = self.blobs.new_name()
        path = await self.ctx.off_loop(self.blobs.install, received.temp_path, name)
        try:
            info = images.NO_IMAGE
            if mime_type in IMAGE_TYPES:
                info = await self.ctx.off_loop(images.inspect, path, self.blobs.thumbnail_path(name),
                                               self.ctx.config.files.thumbnail_max_pixels)
            file_id = new_id()

            async def unit(tx: Tx) -> sqlite3.Row:
                await self._check_quota(principal, received.size, tx)  # again, inside the writer
                now = self.ctx.now()
                expires = iso(self.ctx.clock.now() + timedelta(hours=self.ctx.config.files.staging_ttl_hours))
                await file_store.insert(
                    tx, id=file_id, owner_id=principal.user_id, owner_kind=principal.kind,
                    client_name=clean_name(received.client_name), mime_type=mime_type, size=received.size,
                    sha256=received.sha256, storage_name=name, visibility=visibility, width=info.width,
                    height=info.height, has_thumbnail=info.thumbnail, expires_at=expires, now=now,
                )
                row = await file_store.live_by_id(tx, file_id)
                assert row is not None
                return row

            row = await self.ctx.db.write(unit)
        except BaseException:
            await self.ctx.off_loop(self.blobs.remove, [name])
            raise
        return file_view(row)

    async def _check_quota(self, principal: Principal, size: int, conn: Any = None) -> None:
        """``files.quota_mb`` per user. A temporary room's guests share one: each join makes a new guest
        user, so a per-guest quota would let anyone mint storage at the join rate."""
        quota_mb = self.ctx.config.files.quota_mb
        if quota_mb <= 0:
            return
        conn = conn or self.ctx.db.reader
        if principal.kind == "guest" and principal.room_id is not None:
            used = await file_store.bytes_used_by_room_guests(conn, principal.room_id)
        else:
            used = await file_store.bytes_used(conn, principal.user_id)
        if used + size > quota_mb * MIB:
            raise Invalid.one("file", QUOTA_MESSAGE)

    # Owner access -----------------------------------------------------------------------------

    async def own(self, principal: Principal, file_id: str) -> sqlite3.Row:
        """The caller's own live file; 404 for anything else."""
        row = await self._live(file_id)
        if row is None or row["owner_id"] != principal.user_id:
            raise NotFound()
        return row

    async def downloadable(self, principal: Principal | None, file_id: str) -> sqlite3.Row:
        """A public file for anyone; a private one for its owner. No credential and not public: 401."""
        row = await self._live(file_id)
        if row is not None and row["visibility"] == "public":
            return row
        if principal is None:
            raise Unauthenticated()
        if row is None or row["owner_id"] != principal.user_id:
            raise NotFound()
        return row

    async def _live(self, file_id: str) -> sqlite3.Row | None:
        if not looks_like_id(file_id):
            return None
        return await file_store.live_by_id(self.ctx.db.reader, file_id.lower())

    async def delete(self, principal: Principal, file_id: str) -> None:
        """Soft-delete the row, then remove the bytes (a crash in between leaves bytes the reconcile removes)."""
        if not looks_like_id(file_id):
            raise NotFound()

        async def unit(tx: Tx) -> str | None:
            return await file_store.soft_delete(tx, file_id.lower(), principal.user_id, self.ctx.now())

        name = await self.ctx.db.write(unit)
        if name is None:
            raise NotFound()
        await self.ctx.off_loop(self.blobs.remove, [name])

    async def list_mine(self, principal: Principal, *, claimed: bool, visibility: str | None, q: str | None,
                        sort: str, descending: bool, page: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
        rows, total = await file_store.list_for_owner(
            self.ctx.db.reader, principal.user_id, claimed=claimed, visibility=visibility, q=q, sort=sort,
            descending=descending, limit=per_page, offset=(page - 1) * per_page, now=self.ctx.now(),
        )
        return [file_view(row) for row in rows], total

    # Housekeeping -----------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Staged files past ``expires_at``: rows soft-deleted first, bytes removed after. Idempotent."""
        total = 0
        while True:
            now = self.ctx.now()

            async def unit(tx: Tx, now: str = now) -> list[str]:
                return await file_store.soft_delete_expired(tx, now)

            names = await self.ctx.db.write(unit)
            if names:
                await self.ctx.off_loop(self.blobs.remove, names)
            total += len(names)
            if len(names) < file_store.SWEEP_BATCH:
                return total

    async def reconcile(self) -> tuple[list[str], list[str]]:
        """Make the folder and the table agree (run at start-up, before uploads can begin).

        Bytes with no live row are removed; live rows whose bytes are gone are soft-deleted. Idempotent.
        """
        live = await file_store.live_storage_names(self.ctx.db.reader)
        removed, missing = await self.ctx.off_loop(self.blobs.reconcile, live)
        if missing:
            now = self.ctx.now()

            async def unit(tx: Tx) -> int:
                return await file_store.soft_delete_by_storage_names(tx, missing, now)

            await self.ctx.db.write(unit)
        return removed, missing
