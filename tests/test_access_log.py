"""The access log follows server.access_log: every request, only failures (and slow ones), or none."""

from __future__ import annotations

import logging

import pytest


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "tornado.access"]


@pytest.mark.parametrize(("server_overrides", "logged"), [
    ({"server": {"access_log": "all"}}, ["200 GET /api/v1/health", "404 GET /api/v1/nowhere"]),
    ({"server": {"access_log": "errors"}}, ["404 GET /api/v1/nowhere"]),
    ({"server": {"access_log": "off"}}, []),
])
@pytest.mark.gen_test
async def test_access_log_modes(api, caplog, logged):
    caplog.set_level(logging.INFO, logger="tornado.access")
    assert (await api.get("/health")).status == 200
    assert (await api.get("/nowhere")).status == 404
    lines = access_lines(caplog)
    assert [line.split(" (")[0] for line in lines] == logged
    if logged:
        assert all("(127.0.0.1)" in line and line.endswith("ms") for line in lines)
