"""Guests attach files to room messages; the room's purge removes the files' rows and bytes."""

from __future__ import annotations

import pytest

from tests.support import register

GUEST = "X-Rosetta-Guest-Token"
BOUNDARY = "roomsboundary42"


def multipart(name: str, content: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: text/plain\r\n\r\n").encode() + content + f"\r\n--{BOUNDARY}--\r\n".encode()


async def upload(api, headers, name="notes.txt", content=b"hello from the room\n"):
    return await api.post("/files", raw=multipart(name, content),
                          headers={**headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})


@pytest.mark.gen_test(timeout=30)
async def test_guest_attaches_a_file_and_the_purge_removes_it(api, server, clock):
    dev = await register(api, "Dev")
    room = (await api.post("/external/rooms", {"name": "Support", "ttl_hours": 1}, token=dev.token)).json["data"]
    guests = {}
    for nickname in ("Mei", "Hans"):
        joined = await api.post(f"/external/rooms/{room['room_id']}/guests", {"nickname": nickname})
        guests[nickname] = {GUEST: joined.json["data"]["session"]["token"]}
    staged = await upload(api, guests["Mei"])
    assert staged.status == 201, staged
    file_id = staged.json["data"]["id"]
    leftover = await upload(api, guests["Mei"], "never-sent.txt", b"staged only")
    assert leftover.status == 201
    path = f"/external/rooms/{room['room_id']}/messages"
    # Only the uploader may attach her file.
    stolen = await api.post(path, {"content": "mine", "attachment_ids": [file_id]}, headers=guests["Hans"])
    assert stolen.status == 422 and "attachment_ids" in stolen.json["errors"]
    sent = await api.post(path, {"content": "see attached", "attachment_ids": [file_id]}, headers=guests["Mei"])
    assert sent.status == 201, sent
    attachment = sent.json["data"]["attachments"][0]
    assert attachment["file_id"] == file_id and attachment["client_name"] == "notes.txt"
    # The other guest and the developer download it through the attachment route.
    listed = (await api.get(path, headers=guests["Hans"])).json["data"]
    download = listed[0]["attachments"][0]["download_url"]
    got = await api.get(download, headers=guests["Hans"])
    assert got.status == 200 and got.body == b"hello from the room\n"
    assert (await api.get(download, token=dev.token)).status == 200
    # A guest has no file listing of its own.
    assert (await api.get("/me/files", headers=guests["Mei"])).status == 401

    storage = [row["storage_name"] for row in
               await server.app.db.reader.fetch_all("SELECT storage_name FROM files ORDER BY id")]
    blobs = server.app.files.blobs
    assert set(storage) <= blobs.stored_names() and len(storage) == 2

    clock.advance(hours=1)
    assert await server.app.jobs.run_once("rooms.expire") == {"expired": 1, "purged": 0}
    clock.advance(hours=24)
    assert await server.app.jobs.run_once("rooms.expire") == {"expired": 0, "purged": 1}
    # The guests went, and their files' rows with them (the bytes went after the COMMIT).
    assert await server.app.db.reader.fetch_value("SELECT COUNT(*) FROM files") == 0
    assert not set(storage) & blobs.stored_names()
    assert (await api.get(download, token=dev.token)).status == 404
    channel_path = f"/workspaces/{room['workspace_id']}/channels/{room['channel_id']}/messages"
    assert (await api.get(channel_path, token=dev.token)).json["data"] == []


@pytest.mark.parametrize("server_overrides", [{"files": {"quota_mb": 0.001}}])  # 1,048 bytes per quota
@pytest.mark.gen_test(timeout=30)
async def test_a_rooms_guests_share_one_quota(api):
    dev = await register(api, "Dev")
    make = {"name": "Support", "ttl_hours": 1}
    rooms = [(await api.post("/external/rooms", make, token=dev.token)).json["data"] for _ in range(2)]

    async def guest(room, nickname):
        joined = await api.post(f"/external/rooms/{room['room_id']}/guests", {"nickname": nickname})
        assert joined.status == 201, joined
        return {GUEST: joined.json["data"]["session"]["token"]}

    mei, hans = await guest(rooms[0], "Mei"), await guest(rooms[0], "Hans")
    assert (await upload(api, mei, content=b"x" * 700)).status == 201
    # A second guest of the same room (a fresh join) does not bring fresh storage with it.
    full = await upload(api, hans, content=b"y" * 700)
    assert full.status == 422 and "file" in full.json["errors"], full
    # Another room's guests have their own.
    assert (await upload(api, await guest(rooms[1], "Ola"), content=b"z" * 700)).status == 201
