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


@pytest.mark.parametrize("server_overrides", [{"server": {"access_log": "all"}}])
@pytest.mark.gen_test
async def test_credentials_in_a_query_never_reach_the_log(api, caplog):
    """A token, a verification link's signature or an identity provider's code in a URL is logged by
    name only, whatever the route (a token in the URL is refused outside realtime, and logged all the same)."""
    caplog.set_level(logging.INFO, logger="tornado.access")
    secrets = ["grst_SECRET1", "1|SECRET2", "SECRET3", "SECRET4", "SECRET5"]
    for path in (f"/me?guest_token={secrets[0]}", f"/me?access_token={secrets[1]}&x=1",
                 f"/auth/email/verify/a/b?expires=1&signature={secrets[2]}",
                 f"/auth/app/social/github/callback?code={secrets[3]}&state={secrets[4]}",
                 f"/events?guest_%74oken={secrets[0]}"):
        assert (await api.get(path)).status in (401, 403, 404, 422), path
    lines = access_lines(caplog)
    assert len(lines) == 5 and not [line for line in lines if any(s in line for s in secrets)], lines
    assert "GET /api/v1/me?access_token=***&x=1 (127.0.0.1)" in lines[1]
    assert "expires=1&signature=***" in lines[2] and "code=***&state=***" in lines[3]
