"""Attachments and the files' life cycle over real HTTP: claim rules, who may download, sweep, reconcile, /me/files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from rosetta.errors import Invalid
from rosetta.ids import new_id
from tests.support import register, workspace_with
from tests.test_files import files_on_disk, png_bytes, upload


def messages_path(workspace) -> str:
    return f"/workspaces/{workspace['id']}/channels/{workspace['general']['id']}/messages"


def path_of(url: str) -> str:
    return url.split("/api/v1", 1)[1]


@pytest.mark.gen_test(timeout=30)
async def test_claim_rules_and_nothing_stored_on_422(api, server, clock):
    ana, bob = await register(api, "Ana"), await register(api, "Bob")
    team = await workspace_with(api, ana, bob)
    path = messages_path(team)
    bobs = (await upload(api, bob, b"bob's")).json["data"]["id"]
    expiring = (await upload(api, ana, b"old")).json["data"]["id"]
    deleted = (await upload(api, ana, b"gone")).json["data"]["id"]
    assert (await api.delete(f"/files/{deleted}", token=ana.token)).status == 204
    clock.advance(hours=23)
    good = (await upload(api, ana, b"fresh", "fresh.txt")).json["data"]["id"]
    clock.advance(hours=2)  # `expiring` is now past its expires_at, though no sweep has run
    unknown = new_id()
    for bad in (bobs, expiring, deleted, unknown):
        refused = await api.post(path, {"content": "see file", "attachment_ids": [good, bad]}, token=ana.token)
        assert refused.status == 422, (bad, refused)
        assert refused.json["errors"]["attachment_ids"] == [f"The selected attachment {bad} is invalid."]
    malformed = await api.post(path, {"content": "x", "attachment_ids": [good, "../etc"]}, token=ana.token)
    assert malformed.status == 422
    assert malformed.json["errors"] == {"attachment_ids": ["The selected attachment_ids.1 is invalid."]}
    # Nothing was stored: no message, and the good file is still staged.
    assert (await api.get(path, token=ana.token)).json["data"] == []
    staged = (await api.get(f"/files/{good}", token=ana.token)).json["data"]
    assert staged["claimed"] is False and staged["expires_at"] is not None

    sent = await api.post(path, {"content": "", "attachment_ids": [good]}, token=ana.token)
    assert sent.status == 201, sent
    [attachment] = sent.json["data"]["attachments"]
    assert attachment["file_id"] == good and attachment["client_name"] == "fresh.txt"
    assert attachment["mime_type"] == "text/plain" and attachment["size"] == 5
    assert path_of(attachment["download_url"]) == f"/message-attachments/{attachment['id']}/download"
    assert "thumbnail_url" not in attachment and "width" not in attachment
    claimed = (await api.get(f"/files/{good}", token=ana.token)).json["data"]
    assert claimed["claimed"] is True and claimed["expires_at"] is None
    # The reading side shows the same attachment (rendered for a page in one query).
    listed = (await api.get(path, token=bob.token)).json["data"]
    assert listed[0]["attachments"] == [attachment]
    # Spec §9: the sender's own claimed file may be attached again; someone else's never.
    again = await api.post(path, {"content": "again", "attachment_ids": [good]}, token=ana.token)
    assert again.status == 201 and again.json["data"]["attachments"][0]["file_id"] == good
    stolen = await api.post(path, {"content": "mine now", "attachment_ids": [good]}, token=bob.token)
    assert stolen.status == 422 and stolen.json["errors"]["attachment_ids"]


@pytest.mark.gen_test(timeout=30)
async def test_claim_rechecks_inside_the_write_unit(api, server):
    """A file deleted between the pre-check and the write makes the whole unit roll back."""
    ana = await register(api, "Ana")
    file_id = (await upload(api, ana, b"racy")).json["data"]["id"]
    app = server.app
    await app.attachments.check(app.db.reader, ana.id, [file_id])  # passes now
    assert (await api.delete(f"/files/{file_id}", token=ana.token)).status == 204
    team = await workspace_with(api, ana)

    async def unit(tx):
        await tx.execute(
            "INSERT INTO messages (id, workspace_id, channel_id, author_kind, author_id, original_content,"
            " source_language, created_at, updated_at) VALUES (?, ?, ?, 'user', ?, 'x', 'en', 'now', 'now')",
            (message_id, team["id"], team["general"]["id"], ana.id))
        return await app.attachments.claim(tx, message_id, ana.id, [file_id])

    message_id = new_id()
    with pytest.raises(Invalid):
        await app.db.write(unit)
    assert await app.db.reader.fetch_one("SELECT 1 FROM messages WHERE id = ?", (message_id,)) is None
    assert await app.db.reader.fetch_one("SELECT 1 FROM message_attachments") is None


@pytest.mark.gen_test(timeout=30)
async def test_channel_attachment_downloads_only_for_readers(api):
    ana, bob, carol = await register(api, "Ana"), await register(api, "Bob"), await register(api, "Carol")
    team = await workspace_with(api, ana, bob)
    file_id = (await upload(api, ana, png_bytes(800, 600), "shot.png")).json["data"]["id"]
    sent = await api.post(messages_path(team), {"content": "look", "attachment_ids": [file_id]}, token=ana.token)
    [attachment] = sent.json["data"]["attachments"]
    assert (attachment["width"], attachment["height"]) == (800, 600)
    download = path_of(attachment["download_url"])
    got = await api.get(download, token=bob.token)
    assert got.status == 200 and got.body == png_bytes(800, 600)
    assert got.headers["Content-Disposition"].startswith('attachment; filename="shot.png"')
    assert got.headers["Content-Security-Policy"] == "sandbox"
    thumb = await api.get(path_of(attachment["thumbnail_url"]), token=bob.token)
    with Image.open(io.BytesIO(thumb.body)) as image:
        assert image.size == (320, 240)
    assert (await api.get(download, token=carol.token)).status == 404  # not a member
    assert (await api.get(path_of(attachment["thumbnail_url"]), token=carol.token)).status == 404
    assert (await api.get(download)).status == 401
    assert (await api.get(f"/files/{file_id}/download", token=bob.token)).status == 404  # private: owner only
    wrong_route = f"/direct-message-attachments/{attachment['id']}/download"
    assert (await api.get(wrong_route, token=bob.token)).status == 404


@pytest.mark.gen_test(timeout=30)
async def test_direct_attachment_downloads_only_for_participants(api):
    ana, bob, carol = await register(api, "Ana"), await register(api, "Bob"), await register(api, "Carol")
    await workspace_with(api, ana, bob, carol)  # direct chat opens between people who share a workspace
    conversation = await api.post("/direct-conversations", {"participant_user_id": bob.id}, token=ana.token)
    assert conversation.status in (200, 201), conversation
    conversation_id = conversation.json["data"]["id"]
    file_id = (await upload(api, ana, b"just for bob", "note.txt")).json["data"]["id"]
    sent = await api.post(f"/direct-conversations/{conversation_id}/messages",
                          {"content": "psst", "attachment_ids": [file_id]}, token=ana.token)
    assert sent.status == 201, sent
    [attachment] = sent.json["data"]["attachments"]
    download = path_of(attachment["download_url"])
    assert download == f"/direct-message-attachments/{attachment['id']}/download"
    assert (await api.get(download, token=bob.token)).body == b"just for bob"
    assert (await api.get(download, token=ana.token)).status == 200
    assert (await api.get(download, token=carol.token)).status == 404
    assert (await api.get(f"/message-attachments/{attachment['id']}/download", token=bob.token)).status == 404
    # Deleting the file takes it out of the message and its download route.
    assert (await api.delete(f"/files/{file_id}", token=ana.token)).status == 204
    assert (await api.get(download, token=bob.token)).status == 404
    listed = (await api.get(f"/direct-conversations/{conversation_id}/messages", token=bob.token)).json["data"]
    assert listed[0]["attachments"] == []


@pytest.mark.gen_test(timeout=30)
async def test_sweep_removes_expired_staged_files_rows_first(api, server, clock):
    ana = await register(api, "Ana")
    team = await workspace_with(api, ana)
    staged = (await upload(api, ana, b"abandoned")).json["data"]["id"]
    kept = (await upload(api, ana, b"sent")).json["data"]["id"]
    sent = await api.post(messages_path(team), {"content": "k", "attachment_ids": [kept]}, token=ana.token)
    assert sent.status == 201
    assert len(files_on_disk(server)) == 2
    assert await server.app.jobs.run_once("files.sweep") == 0  # nothing has expired yet
    clock.advance(hours=24, seconds=1)
    assert await server.app.jobs.run_once("files.sweep") == 1
    assert (await api.get(f"/files/{staged}", token=ana.token)).status == 404
    assert (await api.get(f"/files/{kept}", token=ana.token)).status == 200  # claimed files never expire
    assert len(files_on_disk(server)) == 1
    row = await server.app.db.reader.fetch_one("SELECT deleted_at FROM files WHERE id = ?", (staged,))
    assert row["deleted_at"] is not None
    assert await server.app.jobs.run_once("files.sweep") == 0  # idempotent


@pytest.mark.gen_test(timeout=30)
async def test_reconcile_at_start_up_removes_orphans_and_dangling_rows(api, server):
    ana = await register(api, "Ana")
    live = (await upload(api, ana, b"live")).json["data"]["id"]
    lost = (await upload(api, ana, b"lost")).json["data"]["id"]
    root = Path(server.config.data_dir) / "files"
    lost_name = (await server.app.db.reader.fetch_one("SELECT storage_name FROM files WHERE id = ?", (lost,)))[0]
    (root / lost_name).unlink()  # bytes gone (a disk mishap): the row must not dangle
    (root / ("ab" * 16)).write_bytes(b"orphan bytes from a crash before the row was written")
    (root / ".tmp" / "half.part").write_bytes(b"an upload cut off by the crash")
    (root / "thumbs" / ("cd" * 16 + ".png")).write_bytes(b"orphan thumbnail")
    (root / "README").write_text("not ours to judge")
    await server.restart()
    assert sorted(files_on_disk(server)) == sorted(["README", (await server.app.db.reader.fetch_one(
        "SELECT storage_name FROM files WHERE id = ?", (live,)))[0]])
    assert (await api.get(f"/files/{live}/download", token=ana.token)).body == b"live"
    assert (await api.get(f"/files/{lost}", token=ana.token)).status == 404
    before = files_on_disk(server)
    await server.restart()  # idempotent
    assert files_on_disk(server) == before


@pytest.mark.gen_test(timeout=60)
async def test_me_files_filters_sorting_and_pagination(api, server):
    ana, bob = await register(api, "Ana"), await register(api, "Bob")
    team = await workspace_with(api, ana)
    specs = [("Invoice-2026.pdf", 300, "private"), ("holiday.png", 100, "public"), ("invoice_old.txt", 200, "public"),
             ("notes.txt", 50, "private"), ("zeta.bin", 400, "private")]
    ids = {}
    for name, size, visibility in specs:
        ids[name] = (await upload(api, ana, b"z" * size, name, visibility=visibility)).json["data"]["id"]
    await upload(api, bob, b"bob", "invoice-bob.pdf")
    claimed = [ids[n] for n in ("Invoice-2026.pdf", "holiday.png", "invoice_old.txt", "zeta.bin")]
    assert (await api.post(messages_path(team), {"content": "all", "attachment_ids": claimed},
                           token=ana.token)).status == 201

    async def names(query: str) -> list[str]:
        response = await api.get(f"/me/files{query}", token=ana.token)
        assert response.status == 200, response
        return [f["client_name"] for f in response.json["data"]]

    assert await names("") == ["zeta.bin", "invoice_old.txt", "holiday.png", "Invoice-2026.pdf"]  # -created_at
    assert await names("?claimed=false") == ["notes.txt"]
    assert await names("?claimed=0&visibility=public") == []
    assert await names("?visibility=public&sort=client_name") == ["holiday.png", "invoice_old.txt"]
    assert await names("?q=invoice&sort=size") == ["invoice_old.txt", "Invoice-2026.pdf"]
    assert await names("?q=_") == ["invoice_old.txt"]  # LIKE wildcards are literal
    assert await names("?sort=-size") == ["zeta.bin", "Invoice-2026.pdf", "invoice_old.txt", "holiday.png"]
    assert await names("?sort=client_name") == ["holiday.png", "Invoice-2026.pdf", "invoice_old.txt", "zeta.bin"]
    page = await api.get("/me/files?sort=size&per_page=3&page=2", token=ana.token)
    body = page.json
    assert [f["client_name"] for f in body["data"]] == ["zeta.bin"]
    assert body["meta"] == {"current_page": 2, "per_page": 3, "total": 4, "last_page": 2}
    assert body["links"]["next"] is None and "page=1" in body["links"]["prev"]
    assert "sort=size" in body["links"]["first"] and "per_page=3" in body["links"]["last"]
    assert body["data"][0]["claimed"] is True and body["data"][0]["expires_at"] is None
    for bad, field in (("?sort=owner_id", "sort"), ("?claimed=maybe", "claimed"), ("?visibility=x", "visibility"),
                       ("?per_page=101", "per_page"), ("?page=0", "page")):
        refused = await api.get(f"/me/files{bad}", token=ana.token)
        assert refused.status == 422 and field in refused.json["errors"], bad
    assert (await api.get("/me/files")).status == 401


@pytest.mark.gen_test(timeout=30)
async def test_guest_uploads_are_never_listed(api, server):
    dev = await register(api, "Dev")
    room = await api.post("/external/rooms", {"name": "Support", "ttl_hours": 1}, token=dev.token)
    assert room.status == 201, room
    joined = await api.post(f"/external/rooms/{room.json['data']['room_id']}/guests", {"nickname": "Mei"})
    guest = {"X-Rosetta-Guest-Token": joined.json["data"]["session"]["token"]}
    staged = await api.post("/files", raw=b"".join([
        b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"g.txt\"\r\n\r\nguest\r\n",
        b"--b0undary--\r\n"]), headers={**guest, "Content-Type": "multipart/form-data; boundary=b0undary"})
    assert staged.status == 201, staged
    row = await server.app.db.reader.fetch_one("SELECT owner_kind FROM files WHERE id = ?",
                                               (staged.json["data"]["id"],))
    assert row["owner_kind"] == "guest"
    assert (await api.get("/me/files", headers=guest)).status == 401  # guests have no /me
    for claimed in ("true", "false"):
        listed = await api.get(f"/me/files?claimed={claimed}", token=dev.token)
        assert listed.json["data"] == [] and listed.json["meta"]["total"] == 0
