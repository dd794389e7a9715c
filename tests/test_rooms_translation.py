"""Guests of one room in two languages read each other's messages translated, through the real
LibreTranslate provider code talking to a small local server that speaks its protocol."""

from __future__ import annotations

import json
import socket

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

from tests.support import register

GUEST = "X-Rosetta-Guest-Token"


class TranslateStub(tornado.web.RequestHandler):
    """``POST /translate`` of LibreTranslate: ``{"q": [..], "source", "target"}`` → ``{"translatedText": [..]}``."""

    def post(self) -> None:
        body = json.loads(self.request.body)
        texts = body["q"] if isinstance(body["q"], list) else [body["q"]]
        self.application.settings["calls"].append((body["source"], body["target"], texts))
        self.write({"translatedText": [f"[{body['target']}] {text}" for text in texts]})


@pytest.fixture
def libre(io_loop):
    calls: list = []
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    server = tornado.httpserver.HTTPServer(tornado.web.Application([("/translate", TranslateStub)], calls=calls))
    server.add_sockets(sockets)
    yield {"url": f"http://127.0.0.1:{sockets[0].getsockname()[1]}", "calls": calls}
    server.stop()


@pytest.fixture
def server_overrides(libre):
    return {"translation": {"provider": "libretranslate", "url": libre["url"]}}


@pytest.mark.gen_test(timeout=30)
async def test_guests_in_two_languages_read_each_other_translated(api, server, libre):
    dev = await register(api, "Dev")
    room = (await api.post("/external/rooms", {"name": "Support", "ttl_hours": 2}, token=dev.token)).json["data"]
    guests = {}
    for nickname, language in (("Mei", "zh-CN"), ("Hans", "de")):
        joined = await api.post(f"/external/rooms/{room['room_id']}/guests",
                                {"nickname": nickname, "preferred_language": language})
        assert joined.status == 201, joined
        guests[nickname] = {GUEST: joined.json["data"]["session"]["token"]}
    path = f"/external/rooms/{room['room_id']}/messages"
    mei_sent = await api.post(path, {"content": "你好"}, headers=guests["Mei"])
    assert mei_sent.status == 201 and mei_sent.json["data"]["source_language"] == "zh-CN"
    hans_sent = await api.post(path, {"content": "Hallo"}, headers=guests["Hans"])
    assert hans_sent.status == 201 and hans_sent.json["data"]["source_language"] == "de"
    skipped = await api.post(path, {"content": "Nicht übersetzen", "skip_translation": True}, headers=guests["Hans"])
    assert skipped.status == 201

    # Before the worker ran: pending for the other guest, the original shown.
    before = {m["id"]: m for m in (await api.get(path, headers=guests["Hans"])).json["data"]}
    assert before[mei_sent.json["data"]["id"]]["translation_status"] == "pending"
    assert before[mei_sent.json["data"]["id"]]["display_content"] == "你好"

    await server.app.jobs.run_once("translation.work")
    targets = sorted((source, target) for source, target, _ in libre["calls"])
    assert ("de", "zh") in targets and ("zh", "de") in targets and ("de", "en") in targets

    as_hans = {m["id"]: m for m in (await api.get(path, headers=guests["Hans"])).json["data"]}
    seen = as_hans[mei_sent.json["data"]["id"]]
    assert (seen["display_content"], seen["display_source"], seen["translation_status"]) == \
        ("[de] 你好", "translated", "completed")
    own = as_hans[hans_sent.json["data"]["id"]]
    assert (own["display_content"], own["translation_status"]) == ("Hallo", "not_needed")
    assert as_hans[skipped.json["data"]["id"]]["translation_status"] == "skipped"

    as_mei = {m["id"]: m for m in (await api.get(path, headers=guests["Mei"])).json["data"]}
    seen = as_mei[hans_sent.json["data"]["id"]]
    assert (seen["display_content"], seen["display_source"], seen["display_language"]) == \
        ("[zh] Hallo", "translated", "zh-CN")
    assert as_mei[skipped.json["data"]["id"]]["display_content"] == "Nicht übersetzen"

    # The developer reads both in English.
    as_dev = {m["id"]: m for m in (await api.get(path, token=dev.token)).json["data"]}
    assert as_dev[mei_sent.json["data"]["id"]]["display_content"] == "[en] 你好"
    assert as_dev[hans_sent.json["data"]["id"]]["display_content"] == "[en] Hallo"
