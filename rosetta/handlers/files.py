"""Files over HTTP: streamed multipart uploads, metadata, downloads, thumbnails, /me/files and attachment downloads.

The upload route streams: each piece of the body goes through the multipart parser into a temporary
file as it arrives (off the event loop, one piece at a time, so the socket is the backpressure), and
crossing ``files.max_upload_mb`` answers 413 at once with the partial file removed.
"""

from __future__ import annotations

import sqlite3

from rosetta.errors import Invalid, NotFound, PayloadTooLarge
from rosetta.files.multipart import boundary_of
from rosetta.files.receiver import UploadInvalid, UploadReceiver, UploadTooLarge
from rosetta.handlers.base import BaseHandler
from rosetta.handlers.downloads import send_file
from rosetta.handlers.paging import page_body, page_params, sort_param
from rosetta.services.attachments import CHANNEL, DIRECT
from rosetta.services.auth import Principal
from rosetta.services.files import SORT_FIELDS, VISIBILITIES, file_view

# Multipart framing around the file: boundaries and part headers (the parser bounds headers at 16 KiB).
# Equal to the HTTP server's own allowance above the upload limit (app.py), so prepare() refuses first.
MULTIPART_SLACK = 64 * 1024
TRUE_VALUES, FALSE_VALUES = ("1", "true", "yes"), ("0", "false", "no")


class FilesHandler(BaseHandler):
    """``POST /files``: multipart ``file`` (+ ``visibility``), streamed to disk; 201 with the staged File."""

    allow_guest = True  # guests attach files to their room messages (spec: anonymous uploads exist)

    def body_limit(self) -> int:
        return self.app.files.max_upload_bytes + MULTIPART_SLACK

    async def prepare(self) -> None:
        self._receiver: UploadReceiver | None = None
        self._feeding = False
        self._abandoned = False
        await super().prepare()  # authentication, and Content-Length against body_limit(): 413 before any byte
        if self.request.method != "POST":
            return
        boundary = boundary_of(self.request.headers.get("Content-Type"))
        if boundary is None:
            raise Invalid.one("file", "Send the file as multipart/form-data.")
        self._receiver = self.app.files.receiver(boundary)

    async def data_received(self, chunk: bytes) -> None:
        receiver = self._receiver
        if receiver is None or self._finished:
            return  # refused already: the rest of the body is ignored until the connection closes
        self._feeding = True
        try:
            await self.app.ctx.off_loop(receiver.feed, chunk)
        except UploadTooLarge:
            limit_mb = self.app.config.files.max_upload_mb
            self._refuse(PayloadTooLarge(f"The file may not be greater than {limit_mb:g} megabytes.",
                                         {"file": [f"The file may not be greater than {limit_mb:g} megabytes."]}))
        except UploadInvalid as exc:
            self._refuse(Invalid.one(exc.field, exc.problem))
        finally:
            self._feeding = False
            if self._abandoned:
                self._discard()

    def _refuse(self, error: PayloadTooLarge | Invalid) -> None:
        """Answer now, mid-body, with the partial file already gone."""
        self._discard()
        self.answer_now(error)

    def _discard(self) -> None:
        if self._receiver is not None:
            self._receiver.discard()
            self._receiver = None

    def on_connection_close(self) -> None:
        # The client went away mid-upload. A piece may be in the executor right now: then it cleans up.
        if getattr(self, "_feeding", False):
            self._abandoned = True
        else:
            self._discard()
        super().on_connection_close()

    def on_finish(self) -> None:
        self._discard()  # every answer, success or error, leaves no temporary file behind

    async def post(self) -> None:
        receiver = self._receiver
        if receiver is None or self._finished:
            return
        assert self.principal
        try:
            received = receiver.finish()
        except UploadInvalid as exc:
            raise Invalid.one(exc.field, exc.problem) from None
        # stage() owns the temporary file from here (it installs or removes it): a client closing the
        # connection now must not delete it under stage's feet (a FileNotFoundError, logged as a 500).
        self._receiver = None
        data = await self.app.files.stage(self.principal, received, received.fields.get("visibility"))
        self.send_json({"data": data}, 201)


class FileHandler(BaseHandler):
    """``GET /files/{id}`` and ``DELETE /files/{id}``: the owner's own file."""

    allow_guest = True

    async def get(self, file_id: str) -> None:
        assert self.principal
        self.send_json({"data": file_view(await self.app.files.own(self.principal, file_id))})

    async def delete(self, file_id: str) -> None:
        assert self.principal
        await self.app.files.delete(self.principal, file_id)
        self.no_content()


class FileDownloadHandler(BaseHandler):
    """``GET /files/{id}/download`` and ``/thumbnail``: public files for anyone, private ones for the owner."""

    public = True  # a public file needs no credential; private ones are checked in get()
    thumbnail = False

    async def get(self, file_id: str) -> None:
        principal = await self.optional_principal()
        row = await self.app.files.downloadable(principal, file_id)
        if self.thumbnail:
            await send_thumbnail(self, row)
        else:
            await send_file(self, self.app.files.bytes_path(row), size=row["size"], etag_hex=row["sha256"],
                            mime_type=row["mime_type"], name=row["client_name"])

    async def optional_principal(self) -> Principal | None:
        principal = await self.authenticate()
        if principal is not None and principal.kind == "user" and self.ability and not principal.can(self.ability):
            return None  # e.g. an automation-only token: it may still fetch public files
        return principal


class FileThumbnailHandler(FileDownloadHandler):
    thumbnail = True


async def send_thumbnail(handler: BaseHandler, row: sqlite3.Row) -> None:
    path = handler.app.files.thumbnail_path(row)
    if path is None:
        raise NotFound()
    try:
        size = (await handler.app.ctx.off_loop(path.stat)).st_size
    except FileNotFoundError:
        raise NotFound() from None
    await send_file(handler, path, size=size, etag_hex=f"{row['sha256']}-thumb",
                    mime_type="image/png", name="thumbnail.png", inline=True)


class MyFilesHandler(BaseHandler):
    """``GET /me/files``: the caller's uploads, claimed by default; guests have none listed."""

    async def get(self) -> None:
        assert self.principal
        errors: dict[str, list[str]] = {}
        claimed_raw = (self.get_query_argument("claimed", None) or "true").strip().lower()
        if claimed_raw not in TRUE_VALUES + FALSE_VALUES:
            errors["claimed"] = ["The claimed field must be true or false."]
        visibility = self.get_query_argument("visibility", None) or None
        if visibility is not None and visibility not in VISIBILITIES:
            errors["visibility"] = ["The selected visibility is invalid."]
        q = self.get_query_argument("q", None) or None
        if q is not None and (len(q) > 255 or "\x00" in q):
            errors["q"] = ["The q field must not be greater than 255 characters."]
        if errors:
            raise Invalid(errors)
        sort, descending = sort_param(self, SORT_FIELDS, "-created_at")
        page, per_page = page_params(self)
        items, total = await self.app.files.list_mine(
            self.principal, claimed=claimed_raw in TRUE_VALUES, visibility=visibility, q=q, sort=sort,
            descending=descending, page=page, per_page=per_page,
        )
        self.send_json(page_body(self, items, total, page, per_page))


class AttachmentDownloadHandler(BaseHandler):
    """Attachment downloads for the readers of the message (channel readers or direct participants)."""

    allow_guest = True  # room guests are members of their room's workspace
    kind = CHANNEL
    thumbnail = False

    async def get(self, attachment_id: str) -> None:
        assert self.principal
        row = await self.app.attachments.readable(self.principal, attachment_id, self.kind)
        if self.thumbnail:
            await send_thumbnail(self, row)
        else:
            await send_file(self, self.app.files.bytes_path(row), size=row["size"], etag_hex=row["sha256"],
                            mime_type=row["mime_type"], name=row["client_name"])


class AttachmentThumbnailHandler(AttachmentDownloadHandler):
    thumbnail = True


class DirectAttachmentDownloadHandler(AttachmentDownloadHandler):
    kind = DIRECT


class DirectAttachmentThumbnailHandler(AttachmentDownloadHandler):
    kind = DIRECT
    thumbnail = True


ROUTES = [
    (r"/files", FilesHandler),
    (r"/files/([^/]+)", FileHandler),
    (r"/files/([^/]+)/download", FileDownloadHandler),
    (r"/files/([^/]+)/thumbnail", FileThumbnailHandler),
    (r"/me/files", MyFilesHandler),
    (r"/message-attachments/([^/]+)/download", AttachmentDownloadHandler),
    (r"/message-attachments/([^/]+)/thumbnail", AttachmentThumbnailHandler),
    (r"/direct-message-attachments/([^/]+)/download", DirectAttachmentDownloadHandler),
    (r"/direct-message-attachments/([^/]+)/thumbnail", DirectAttachmentThumbnailHandler),
]
