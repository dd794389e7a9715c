"""Per-reader translation end to end: a real server, a local LibreTranslate-speaking provider stub."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from typing import Any

import pytest

from rosetta.clock import iso
from rosetta.services.fresh import ANY_WRITE
from tests.rest_support import member_id
from tests.support import Api, Response, User, register, workspace_with

SPANISH = "Hola a todos, ¿cómo están hoy? Nos vemos mañana en la oficina."


@pytest.fixture
def server_overrides(stub):
    return {"translation": {"provider": "libretranslate", "url": stub.url, "max_attempts": 3}}


async def team(api):
    ana = await register(api, "Ana", "en")
    bea = await register(api, "Bea", "es")
    ws = await workspace_with(api, ana, bea)
    return ana, bea, ws, f"/workspaces/{ws['id']}/channels/{ws['general']['id']}/messages"


@pytest.mark.gen_test(timeout=30)
async def test_spanish_message_is_pending_then_completed_for_the_english_reader(server, api, stub):
    ana, bea, _ws, path = await team(api)
    sent = await api.post(path, {"content": SPANISH}, token=bea.token)
    assert sent.status == 201, sent
    message = sent.json["data"]
    assert message["source_language"] == "es" and message["translation_status"] == "not_needed"
    seen = (await api.get(path, token=ana.token)).json["data"][0]
    assert seen["translation_status"] == "pending" and seen["display_source"] == "original"
    await server.app.jobs.run_once("translation.work")
    seen = (await api.get(path, token=ana.token)).json["data"][0]
    assert seen["translation_status"] == "completed"
    assert seen["display_source"] == "translated" and seen["display_language"] == "en"
    assert seen["display_content"] == f"[en] {SPANISH}"
    assert seen["original_content"] == SPANISH
    own = (await api.get(path, token=bea.token)).json["data"][0]
    assert own["translation_status"] == "not_needed" and own["display_content"] == SPANISH
    assert stub.requests[0]["body"]["q"] == [SPANISH]
    assert stub.requests[0]["body"]["source"] == "es" and stub.requests[0]["body"]["target"] == "en"


@pytest.mark.gen_test(timeout=30)
async def test_spanish_reader_receives_message_translated_over_websocket(server, api, stub):
    from tornado.websocket import websocket_connect

    ana, bea, _ws, path = await team(api)
    socket = await websocket_connect(f"ws://127.0.0.1:{server.port}/api/v1/realtime?access_token={bea.token}")
    try:
        hello = json.loads(await socket.read_message())
        assert hello["type"] == "hello"
        english = "Good morning everyone, the deployment went well and the tests are green."
        sent = await api.post(path, {"content": english}, token=ana.token)
        assert sent.status == 201
        await server.app.jobs.run_once("translation.work")
        frames = []
        while True:
            frame = json.loads(await socket.read_message())
            frames.append(frame)
            if frame.get("event") == "message.translated":
                break
        created = next(f for f in frames if f.get("event") == "message.created")
        assert created["data"]["translation_status"] == "pending"
        translated = frames[-1]["data"]
        assert translated["id"] == sent.json["data"]["id"]
        assert translated["translation_status"] == "completed" and translated["display_language"] == "es"
        assert translated["display_content"] == f"[es] {english}"
    finally:
        socket.close()


@pytest.mark.gen_test(timeout=30)
async def test_skip_translation_is_skipped_and_queues_nothing(server, api, stub):
    ana, bea, _ws, path = await team(api)
    sent = await api.post(path, {"content": SPANISH, "skip_translation": True}, token=bea.token)
    assert sent.json["data"]["translation_status"] == "skipped"
    assert await server.app.jobs.run_once("translation.work") == 0
    seen = (await api.get(path, token=ana.token)).json["data"][0]
    assert seen["translation_status"] == "skipped" and seen["display_content"] == SPANISH
    assert stub.requests == []


@pytest.mark.gen_test(timeout=30)
async def test_failures_back_off_then_end_failed(server, api, stub, clock):
    ana, bea, _ws, path = await team(api)
    stub.fail = True
    await api.post(path, {"content": SPANISH}, token=bea.token)
    await server.app.jobs.run_once("translation.work")
    assert len(stub.calls("/translate")) == 1
    # Still inside the backoff: nothing is due, the provider is not asked again.
    await server.app.jobs.run_once("translation.work")
    assert len(stub.calls("/translate")) == 1
    seen = (await api.get(path, token=ana.token)).json["data"][0]
    assert seen["translation_status"] == "pending"
    for _ in range(2):  # max_attempts = 3
        clock.advance(hours=2)
        await server.app.jobs.run_once("translation.work")
    assert len(stub.calls("/translate")) == 3
    seen = (await api.get(path, token=ana.token)).json["data"][0]
    assert seen["translation_status"] == "failed" and seen["display_content"] == SPANISH
    assert seen["display_source"] == "original"
    clock.advance(hours=24)
    await server.app.jobs.run_once("translation.work")
    assert len(stub.calls("/translate")) == 3  # failed is final


@pytest.mark.gen_test(timeout=30)
async def test_lost_placeholder_fails_instead_of_corrupting(server, api, stub, clock):
    ana, bea, _ws, path = await team(api)
    stub.drop_placeholders = True
    text = "Mirad este enlace https://example.com/docs y decidme qué pensáis, @ana por favor"
    await api.post(path, {"content": text}, token=bea.token)
    for _ in range(3):
        await server.app.jobs.run_once("translation.work")
        clock.advance(hours=2)
    seen = (await api.get(path, token=ana.token)).json["data"][0]
    assert seen["translation_status"] == "failed" and seen["display_content"] == text


@pytest.mark.gen_test(timeout=60)
async def test_a_round_of_many_messages_translates_and_announces_each(server, api, stub):
    ana, bea = await register(api, "Ana", "en"), await register(api, "Bea", "es")
    cid = await register(api, "Cid", "fr")
    ws = await workspace_with(api, ana, bea, cid)
    path = f"/workspaces/{ws['id']}/channels/{ws['general']['id']}/messages"
    count = 70  # masked in several loop turns (MASKS_BETWEEN_YIELDS), once for both reader languages
    for number in range(count):
        assert (await api.post(path, {"content": f"{SPANISH} Mensaje {number}."}, token=bea.token)).status == 201
    assert await server.app.jobs.run_once("translation.work") == 2 * count
    for reader, language in ((ana, "en"), (cid, "fr")):
        seen = (await api.get(f"{path}?limit={count}", token=reader.token)).json["data"]
        assert [m["translation_status"] for m in seen] == ["completed"] * count
        assert {m["display_content"] for m in seen} == {f"[{language}] {SPANISH} Mensaje {n}." for n in range(count)}
    assert stub.texts == 2 * count
    announced = await server.app.db.reader.fetch_value(
        "SELECT COUNT(*) FROM events WHERE name = 'message.translated'")
    assert announced == 2 * count


@pytest.mark.gen_test(timeout=30)
async def test_memory_translates_identical_text_once(server, api, stub):
    ana, bea, _ws, path = await team(api)
    await api.post(path, {"content": SPANISH}, token=bea.token)
    await server.app.jobs.run_once("translation.work")
    await api.post(path, {"content": SPANISH}, token=bea.token)
    await server.app.jobs.run_once("translation.work")
    assert stub.texts == 1
    seen = (await api.get(path, token=ana.token)).json["data"]
    assert [m["translation_status"] for m in seen] == ["completed", "completed"]
    assert {m["display_content"] for m in seen} == {f"[en] {SPANISH}"}


@pytest.mark.gen_test(timeout=30)
async def test_memory_is_shared_by_texts_differing_only_in_masked_parts(server, api, stub):
    ana, bea, _ws, path = await team(api)
    for who in ("@ana", "@luis"):
        await api.post(path, {"content": f"Muchas gracias por la ayuda de ayer {who}, de verdad"}, token=bea.token)
    await server.app.jobs.run_once("translation.work")
    assert stub.texts == 1
    shown = sorted(m["display_content"] for m in (await api.get(path, token=ana.token)).json["data"])
    assert shown == ["[en] Muchas gracias por la ayuda de ayer @ana, de verdad",
                     "[en] Muchas gracias por la ayuda de ayer @luis, de verdad"]


@pytest.mark.gen_test(timeout=30)
async def test_memory_forgets_translations_older_than_memory_days(server, api, stub, clock):
    _ana, bea, _ws, path = await team(api)
    await api.post(path, {"content": SPANISH}, token=bea.token)
    await server.app.jobs.run_once("translation.work")
    assert stub.texts == 1
    clock.advance(days=89)  # memory_days = 90 (the default)
    assert await server.app.jobs.run_once("translation.memory_trim") == 0
    await api.post(path, {"content": SPANISH}, token=bea.token)
    await server.app.jobs.run_once("translation.work")
    assert stub.texts == 1  # still remembered, and a hit does not make an entry younger
    clock.advance(days=2)
    assert await server.app.jobs.run_once("translation.memory_trim") == 1
    await api.post(path, {"content": SPANISH}, token=bea.token)
    await server.app.jobs.run_once("translation.work")
    assert stub.texts == 2  # forgotten: asked of the provider again, and learned again
    assert await server.app.jobs.run_once("translation.memory_trim") == 0


@pytest.mark.gen_test(timeout=30)
async def test_memory_trim_deletes_in_chunks_and_keeps_the_young(server, api, stub, clock):
    _ana, bea, _ws, path = await team(api)
    for n in range(5):
        await api.post(path, {"content": f"{SPANISH} ({n})"}, token=bea.token)
    await server.app.jobs.run_once("translation.work")
    clock.advance(days=91)
    for n in range(5, 7):
        await api.post(path, {"content": f"{SPANISH} ({n})"}, token=bea.token)
    await server.app.jobs.run_once("translation.work")
    assert stub.texts == 7
    # Chunks of 2: the 5 old entries go in three units; the third meets the young ones and stops.
    assert await server.app.translation.trim_memory(chunk=2) == 5
    for n in (0, 6):
        await api.post(path, {"content": f"{SPANISH} ({n})"}, token=bea.token)
    await server.app.jobs.run_once("translation.work")
    assert stub.texts == 8  # (0) was forgotten, (6) was kept


@pytest.mark.gen_test(timeout=30)
async def test_memory_outlives_a_restart_in_a_file_of_its_own(server, api, stub):
    _ana, bea, _ws, path = await team(api)
    await api.post(path, {"content": SPANISH}, token=bea.token)
    await server.app.jobs.run_once("translation.work")
    await server.restart()
    await api.post(path, {"content": SPANISH}, token=bea.token)
    await server.app.jobs.run_once("translation.work")
    assert stub.texts == 1
    with sqlite3.connect(server.config.data_dir / "translation-memory.sqlite3") as raw:
        assert raw.execute("SELECT source, target, translated FROM translation_memory").fetchall() == [
            ("es", "en", f"[en] {SPANISH}")]
    with sqlite3.connect(server.config.data_dir / "rosetta.sqlite3") as raw:  # not in the database any more
        assert raw.execute("SELECT name FROM sqlite_master WHERE name = 'translation_memory'").fetchall() == []


@pytest.mark.gen_test(timeout=30)
async def test_a_memory_that_cannot_learn_costs_a_provider_call_not_a_translation(server, api, stub, caplog):
    ana, bea, _ws, path = await team(api)
    # Another process holds the memory's write lock past the busy timeout (5 s): learning fails.
    other = sqlite3.connect(server.config.data_dir / "translation-memory.sqlite3", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        await api.post(path, {"content": SPANISH}, token=bea.token)
        await server.app.jobs.run_once("translation.work")
    finally:
        other.close()  # and with it the lock
    assert "the translation memory could not store 1 entries" in caplog.text
    seen = (await api.get(path, token=ana.token)).json["data"][0]
    assert seen["translation_status"] == "completed" and seen["display_content"] == f"[en] {SPANISH}"
    await api.post(path, {"content": SPANISH}, token=bea.token)
    await server.app.jobs.run_once("translation.work")
    assert stub.texts == 2  # not remembered, so asked again; and learned this time
    await api.post(path, {"content": SPANISH}, token=bea.token)
    await server.app.jobs.run_once("translation.work")
    assert stub.texts == 2


@pytest.mark.gen_test(timeout=30)
async def test_a_memory_kept_in_the_database_by_an_older_server_moves_to_its_file(server, api, stub, clock):
    """Before it had a file of its own, the memory was the database's translation_memory table: its
    entries are copied at start-up, learning dates and all, and the table is dropped."""
    from rosetta.store.translation_memory import masked_hash
    from rosetta.translation.mask import mask

    ana, bea, _ws, path = await team(api)
    await server.stop()
    data = server.config.data_dir
    (data / "translation-memory.sqlite3").unlink()  # an older server had none
    learned = clock.now() - timedelta(days=80)
    with sqlite3.connect(data / "rosetta.sqlite3") as raw:  # the table as migration 0006 made it
        raw.execute("CREATE TABLE translation_memory (provider TEXT NOT NULL, source TEXT NOT NULL,"
                    " target TEXT NOT NULL, masked_hash TEXT NOT NULL, translated TEXT NOT NULL,"
                    " created_at TEXT NOT NULL, PRIMARY KEY (provider, source, target, masked_hash))")
        raw.execute("INSERT INTO translation_memory VALUES ('libretranslate', 'es', 'en', ?, 'Remembered.', ?)",
                    (masked_hash(mask(SPANISH).text), iso(learned)))
    await server.start()
    await api.post(path, {"content": SPANISH}, token=bea.token)
    await server.app.jobs.run_once("translation.work")
    assert stub.texts == 0
    assert (await api.get(path, token=ana.token)).json["data"][0]["display_content"] == "Remembered."
    with sqlite3.connect(data / "rosetta.sqlite3") as raw:
        assert raw.execute("SELECT name FROM sqlite_master WHERE name = 'translation_memory'").fetchall() == []
    clock.advance(days=11)  # 91 days after it was learned: the copy kept its age
    assert await server.app.jobs.run_once("translation.memory_trim") == 1


@pytest.mark.gen_test(timeout=30)
async def test_translating_moves_only_its_places_cached_reads(server, api, stub):
    """A translation shows in its channel's history pages, and in no other cached read: the worker's
    commits move that channel's stamp, not every stamp (which would re-read every page and each
    hub's readers after every round)."""
    ana, bea, _ws, path = await team(api)
    await api.post(path, {"content": SPANISH}, token=bea.token)
    assert (await api.get(path, token=ana.token)).json["data"][0]["translation_status"] == "pending"  # cached
    stamp = server.app.db.freshness(ANY_WRITE)
    await server.app.jobs.run_once("translation.work")
    assert (await api.get(path, token=ana.token)).json["data"][0]["translation_status"] == "completed"
    assert server.app.db.freshness(ANY_WRITE) == stamp


@pytest.mark.gen_test(timeout=30)
async def test_a_new_reading_language_is_queued_from_the_next_message_on(server, api, stub):
    """A place's reading languages are read before the posting unit and kept between writes; a
    language change and a newcomer each move every stamp, so the very next message is queued for them."""
    ana, bea, ws, path = await team(api)
    await api.post(path, {"content": SPANISH}, token=bea.token)  # queued for en; the languages are kept
    ana_member = await member_id(api, ws["id"], ana, ana.token)
    changed = await api.put(f"/workspaces/{ws['id']}/members/{ana_member}", {"preferred_language": "fr"},
                            token=ana.token)
    assert changed.status == 200, changed
    second = "Otra cosa: el almuerzo de mañana es a la una en punto."
    await api.post(path, {"content": second}, token=bea.token)
    cid = await register(api, "Cid", "de")
    invite = await api.post(f"/workspaces/{ws['id']}/invites", {"expires_in_days": 1}, token=ana.token)
    assert (await api.post(f"/invites/{invite.json['data']['code']}/accept", token=cid.token)).status == 200
    third = "Y una última cosa: traed los portátiles cargados, por favor."
    await api.post(path, {"content": third}, token=bea.token)
    await server.app.jobs.run_once("translation.work")
    asked = {(call["body"]["target"], text) for call in stub.calls("/translate") for text in call["body"]["q"]}
    assert asked == {("en", SPANISH), ("fr", second), ("fr", third), ("de", third)}
    seen = (await api.get(path, token=cid.token)).json["data"][0]
    assert seen["translation_status"] == "completed" and seen["display_content"] == f"[de] {third}"


@pytest.mark.gen_test(timeout=30)
async def test_edit_drops_translations_and_translates_again(server, api, stub):
    ana, bea, _ws, path = await team(api)
    message = (await api.post(path, {"content": SPANISH}, token=bea.token)).json["data"]
    await server.app.jobs.run_once("translation.work")
    edited = "Perdón, la reunión de mañana es a las diez en la sala grande."
    patched = await api.patch(f"{path}/{message['id']}", {"content": edited}, token=bea.token)
    assert patched.status == 200, patched
    seen = (await api.get(path, token=ana.token)).json["data"][0]
    assert seen["translation_status"] == "pending" and seen["display_content"] == edited
    await server.app.jobs.run_once("translation.work")
    seen = (await api.get(path, token=ana.token)).json["data"][0]
    assert seen["translation_status"] == "completed" and seen["display_content"] == f"[en] {edited}"
    assert stub.calls("/translate")[-1]["body"]["q"] == [edited]


@pytest.mark.gen_test(timeout=30)
async def test_deleting_a_message_deletes_its_translations_and_pending_jobs(server, api, stub):
    _ana, bea, _ws, path = await team(api)
    done = (await api.post(path, {"content": SPANISH}, token=bea.token)).json["data"]
    await server.app.jobs.run_once("translation.work")
    waiting = (await api.post(path, {"content": f"{SPANISH} Otra vez."}, token=bea.token)).json["data"]
    db = server.app.db

    async def translations_of(message_id: str) -> list[str]:
        rows = await db.reader.fetch_all("SELECT status FROM message_translations WHERE message_id = ?",
                                         (message_id,))
        return [row["status"] for row in rows]

    assert await translations_of(done["id"]) == ["completed"] and await translations_of(waiting["id"]) == ["pending"]
    for message in (done, waiting):
        assert (await api.delete(f"{path}/{message['id']}", token=bea.token)).status == 204
    # The translated text of a deleted message is kept nowhere, and nothing is sent to be translated.
    assert await translations_of(done["id"]) == [] and await translations_of(waiting["id"]) == []
    await server.app.jobs.run_once("translation.work")
    assert stub.texts == 1


@pytest.mark.gen_test(timeout=30)
async def test_restart_resumes_pending_jobs(server, api, stub):
    ana, bea, _ws, path = await team(api)
    await api.post(path, {"content": SPANISH}, token=bea.token)
    await server.restart()
    await server.app.jobs.run_once("translation.work")
    seen = (await api.get(path, token=ana.token)).json["data"][0]
    assert seen["translation_status"] == "completed"


@pytest.mark.gen_test(timeout=30)
async def test_a_crashed_workers_lease_expires_and_the_job_is_claimed_again(server, api, stub, clock):
    from rosetta.clock import iso
    from rosetta.store import translations as store

    ana, bea, _ws, path = await team(api)
    await api.post(path, {"content": SPANISH}, token=bea.token)
    app = server.app
    lease = iso(clock.now() + timedelta(seconds=app.translation.queue.lease_s))
    # A worker claims the job and dies before finishing (the claim is committed, nothing else).
    claimed = await app.db.write(lambda tx: store.claim(tx, clock.now_iso(), lease, 10, 3))
    assert len(claimed) == 1
    await server.restart()
    assert await server.app.jobs.run_once("translation.work") == 0  # still leased
    clock.advance(seconds=server.app.translation.queue.lease_s + 1)
    assert await server.app.jobs.run_once("translation.work") == 1
    seen = (await api.get(path, token=ana.token)).json["data"][0]
    assert seen["translation_status"] == "completed"


@pytest.mark.gen_test(timeout=30)
async def test_a_job_whose_worker_dies_on_every_attempt_ends_failed(server, api, stub, clock):
    from rosetta.clock import iso
    from rosetta.store import translations as store

    ana, bea, _ws, path = await team(api)  # translation.max_attempts = 3 here
    await api.post(path, {"content": SPANISH}, token=bea.token)
    for attempt in range(3):
        app = server.app
        lease = iso(clock.now() + timedelta(seconds=app.translation.queue.lease_s))
        # A worker leases the job and dies before finishing: only the claim is committed.
        claimed = await app.db.write(lambda tx, lease=lease: store.claim(tx, clock.now_iso(), lease, 10, 3))
        assert [(row["status"], row["attempts"]) for row in claimed] == [("pending", attempt + 1)]
        await server.restart()
        clock.advance(seconds=server.app.translation.queue.lease_s + 1)
    # Read, and so cached, while still pending: the claim that gives up must move this page's stamp.
    assert (await api.get(path, token=ana.token)).json["data"][0]["translation_status"] == "pending"
    # Its three tries are used up: the next claim gives up on it instead of leasing it forever.
    assert await server.app.jobs.run_once("translation.work") == 0
    assert stub.calls("/translate") == []
    seen = (await api.get(path, token=ana.token)).json["data"][0]
    assert seen["translation_status"] == "failed" and seen["display_source"] == "original"
    assert await server.app.jobs.run_once("translation.work") == 0  # and stays given up


@pytest.mark.gen_test(timeout=30)
async def test_on_demand_translate_for_a_reader_and_404_with_no_provider_call_for_outsiders(server, api, stub):
    ana, bea, _ws, path = await team(api)
    eve = await register(api, "Eve", "de")
    message = (await api.post(path, {"content": SPANISH, "skip_translation": False}, token=bea.token)).json["data"]
    outsider = await api.post(f"{path}/{message['id']}/translate", {"target_language": "de"}, token=eve.token)
    assert outsider.status == 404
    assert stub.requests == []
    bad = await api.post(f"{path}/{message['id']}/translate", {"target_language": "not a language"}, token=ana.token)
    assert bad.status == 422 and "target_language" in bad.json["errors"]
    missing = await api.post(f"{path}/01aaaaaaaaaaaaaaaaaaaaaaaa/translate", {"target_language": "de"}, token=ana.token)
    assert missing.status == 404
    assert stub.requests == []
    asked = await api.post(f"{path}/{message['id']}/translate", {"target_language": "fr"}, token=ana.token)
    assert asked.status == 200, asked
    data = asked.json["data"]
    assert data["translation_status"] == "completed" and data["display_language"] == "fr"
    assert data["display_content"] == f"[fr] {SPANISH}"
    again = await api.post(f"{path}/{message['id']}/translate", {"target_language": "fr"}, token=ana.token)
    assert again.json["data"]["display_content"] == f"[fr] {SPANISH}"
    assert stub.texts == 1  # the second ask is answered from the stored translation
    same = await api.post(f"{path}/{message['id']}/translate", {"target_language": "es"}, token=ana.token)
    assert same.json["data"]["translation_status"] == "not_needed"
    assert stub.texts == 1


@pytest.mark.gen_test(timeout=30)
async def test_on_demand_translate_in_a_direct_conversation(server, api, stub):
    ana, bea, _ws, _path = await team(api)
    eve = await register(api, "Eve", "de")
    conversation = (await api.post("/direct-conversations", {"participant_user_id": bea.id}, token=ana.token)).json
    cid = conversation["data"]["id"]
    message = (await api.post(f"/direct-conversations/{cid}/messages", {"content": SPANISH}, token=bea.token)).json
    mid = message["data"]["id"]
    outsider = await api.post(f"/direct-conversations/{cid}/messages/{mid}/translate", {"target_language": "de"},
                              token=eve.token)
    assert outsider.status == 404 and stub.requests == []
    # The queued job for the English participant, then an on-demand German view.
    await server.app.jobs.run_once("translation.work")
    listed = (await api.get(f"/direct-conversations/{cid}/messages", token=ana.token)).json["data"][0]
    assert listed["display_content"] == f"[en] {SPANISH}"
    asked = await api.post(f"/direct-conversations/{cid}/messages/{mid}/translate", {"target_language": "de"},
                           token=ana.token)
    assert asked.status == 200 and asked.json["data"]["display_content"] == f"[de] {SPANISH}"


@pytest.mark.gen_test(timeout=30)
async def test_glossary_read_by_members_written_by_admins_and_never_translated(server, api, stub):
    ana, bea, ws, path = await team(api)
    glossary = f"/workspaces/{ws['id']}/glossary"
    assert (await api.get(glossary, token=bea.token)).json == {"data": {"terms": []}}
    refused = await api.put(glossary, {"terms": ["Rosetta"]}, token=bea.token)
    assert refused.status == 403
    # Who may change it is decided before what was sent: a body without terms is 403 / 404 to them too.
    assert (await api.put(glossary, {}, token=bea.token)).status == 403
    outsider = await register(api, "Olu", "en")
    assert (await api.put(glossary, {}, token=outsider.token)).status == 404
    missing = await api.put(glossary, {}, token=ana.token)
    assert missing.status == 422 and missing.json["errors"] == {"terms": ["The terms field is required."]}
    too_long = await api.put(glossary, {"terms": ["ok", "x" * 101]}, token=ana.token)
    assert too_long.status == 422 and "terms.1" in too_long.json["errors"]
    for unstorable in ("\ud800", "a\x00b"):  # a lone surrogate reached SQLite: a 500
        refused = await api.put(glossary, {"terms": ["ok", unstorable]}, token=ana.token)
        assert refused.status == 422 and list(refused.json["errors"]) == ["terms.1"], refused
    too_many = await api.put(glossary, {"terms": [f"t{i}" for i in range(501)]}, token=ana.token)
    assert too_many.status == 422 and "terms" in too_many.json["errors"]
    assert (await api.put(glossary, {"terms": "Rosetta"}, token=ana.token)).status == 422
    saved = await api.put(glossary, {"terms": [" Casa Azul ", "casa azul", "Rosetta"]}, token=ana.token)
    assert saved.status == 200 and saved.json["data"]["terms"] == ["Casa Azul", "Rosetta"]
    assert (await api.get(glossary, token=bea.token)).json["data"]["terms"] == ["Casa Azul", "Rosetta"]
    eve = await register(api, "Eve", "de")
    assert (await api.get(glossary, token=eve.token)).status == 404
    text = "Mañana presentamos Rosetta a los clientes de Casa Azul en la oficina central."
    await api.post(path, {"content": text}, token=bea.token)
    await server.app.jobs.run_once("translation.work")
    sent = stub.calls("/translate")[-1]["body"]["q"][0]
    assert "Rosetta" not in sent and "Casa Azul" not in sent
    seen = (await api.get(path, token=ana.token)).json["data"][0]
    assert seen["display_content"] == f"[en] {text}"


@pytest.mark.gen_test(timeout=30)
async def test_languages_from_the_provider_for_any_authentication(server, api, stub):
    ana = await register(api, "Ana", "en")
    listed = await api.get("/translation/languages", token=ana.token)
    assert listed.status == 200
    assert listed.json == {"data": [{"code": "en", "name": "English"}, {"code": "es", "name": "Spanish"}],
                           "meta": {"provider": "libretranslate"}}
    assert (await api.get("/translation/languages")).status == 401
    # A token made for one narrow job (a bot's, a room tool's) may list them too; it may do nothing else.
    for ability in ("automation", "temporary-rooms:create"):
        made = await api.post("/me/tokens", {"name": "bot", "abilities": [ability]}, token=ana.token)
        narrow = made.json["data"]["token"]
        assert (await api.get("/translation/languages", token=narrow)).json == listed.json
        assert (await api.get("/me", token=narrow)).status == 403


ENGLISH = "Good morning everyone, the nightly build finished and every test passed."


async def integration_post(api: Api, ana: User, ws: dict[str, Any], route: str) -> Response:
    """An English message posted by an integration: an incoming webhook, or an automation token of Ana's."""
    if route == "webhook":
        created = await api.post(f"/workspaces/{ws['id']}/webhooks",
                                 {"name": "CI", "default_channel_id": ws["general"]["id"]}, token=ana.token)
        assert created.status == 201, created
        hook = created.json["data"]
        return await api.post(f"/webhooks/{hook['id']}/messages", {"content": ENGLISH}, token=hook["secret"])
    made = await api.post("/me/tokens", {"name": "script", "abilities": ["automation"]}, token=ana.token)
    assert made.status == 201, made
    return await api.post(f"/automation/workspaces/{ws['id']}/channels/{ws['general']['id']}/messages",
                          {"content": ENGLISH}, token=made.json["data"]["token"])


@pytest.mark.parametrize("route", ["webhook", "automation"])
@pytest.mark.gen_test(timeout=30)
async def test_integration_messages_are_translated_like_any_other(server, api, stub, route):
    ana, bea, ws, path = await team(api)
    sent = await integration_post(api, ana, ws, route)
    assert sent.status == 201, sent
    assert sent.json["data"]["author"]["kind"] == route and sent.json["data"]["source_language"] == "en"
    seen = (await api.get(path, token=bea.token)).json["data"][0]
    assert seen["id"] == sent.json["data"]["id"]
    assert seen["translation_status"] == "pending" and seen["display_content"] == ENGLISH
    assert await server.app.jobs.run_once("translation.work") == 1
    seen = (await api.get(path, token=bea.token)).json["data"][0]
    assert seen["translation_status"] == "completed" and seen["display_source"] == "translated"
    assert seen["display_language"] == "es" and seen["display_content"] == f"[es] {ENGLISH}"
    assert seen["original_content"] == ENGLISH
    own = (await api.get(path, token=ana.token)).json["data"][0]
    assert own["translation_status"] == "not_needed" and own["display_content"] == ENGLISH
    [call] = stub.calls("/translate")
    assert call["body"]["q"] == [ENGLISH] and (call["body"]["source"], call["body"]["target"]) == ("en", "es")


@pytest.mark.gen_test(timeout=30)
async def test_a_users_own_language_change_is_read_from_the_next_message_on(server, api, stub):
    """PATCH /me changes the reader language wherever the member has none of their own: the next message
    is queued for it (the cached reading languages are not kept past the change)."""
    ana, bea, _ws, path = await team(api)
    await api.post(path, {"content": SPANISH}, token=bea.token)  # queued for en, and the languages are cached
    changed = await api.patch("/me", {"preferred_language": "fr"}, token=ana.token)
    assert changed.status == 200 and changed.json["preferred_language"] == "fr"
    second = "Otra cosa: el almuerzo de mañana es a la una en punto."
    await api.post(path, {"content": second}, token=bea.token)
    await server.app.jobs.run_once("translation.work")
    asked = {(call["body"]["target"], text) for call in stub.calls("/translate") for text in call["body"]["q"]}
    assert asked == {("en", SPANISH), ("fr", second)}
    latest = (await api.get(path, token=ana.token)).json["data"][0]
    assert latest["display_language"] == "fr" and latest["display_content"] == f"[fr] {second}"
