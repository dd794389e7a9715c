"""The credentials.cleanup job (spec 7): spent and expired credentials go, live ones stay."""

from __future__ import annotations

import pytest

from rosetta.services.fresh import ANY_WRITE
from tests.support import register, workspace_with


async def count(server, table: str) -> int:
    return await server.app.db.reader.fetch_value(f"SELECT COUNT(*) FROM {table}")


@pytest.mark.gen_test(timeout=30)
async def test_cleanup_removes_only_what_can_never_be_used_again(api, server, clock):
    ana = await register(api, "Ana")
    bea = await register(api, "Bea")
    assert (await api.post("/auth/app/logout", token=bea.token)).status == 200  # a revoked token
    assert (await api.post("/auth/app/otp", {"email": "ana@example.test"})).status == 200
    assert (await api.post("/auth/app/forgot-password", {"email": ana.email})).status == 200
    assert await count(server, "otp_codes") == 1 and await count(server, "password_resets") == 1

    # Nothing has expired yet: only the revoked token goes.
    first = await server.app.jobs.run_once("credentials.cleanup")
    assert first["tokens"] == 1 and first["otp_codes"] == 0 and first["password_resets"] == 0
    assert await count(server, "otp_codes") == 1 and await count(server, "password_resets") == 1

    clock.advance(hours=2)  # past the code's 10 minutes and the reset link's 60
    second = await server.app.jobs.run_once("credentials.cleanup")
    assert second["otp_codes"] == 1 and second["password_resets"] == 1 and second["tokens"] == 0
    assert await count(server, "otp_codes") == 0 and await count(server, "password_resets") == 0
    # Ana's live login token is untouched and still works; Bea's revoked one stays refused.
    assert (await api.get("/me", token=ana.token)).status == 200
    assert (await api.get("/me", token=bea.token)).status == 401
    assert await server.app.jobs.run_once("credentials.cleanup") == {
        "sessions": 0, "tokens": 0, "otp_codes": 0, "password_resets": 0, "oauth_states": 0, "invites": 0}


@pytest.mark.gen_test(timeout=30)
async def test_cleanup_keeps_every_cached_read(api, server):
    """No cached read shows credentials: the hourly cleanup must not make every page be read again."""
    bea = await register(api, "Bea")
    assert (await api.post("/auth/app/logout", token=bea.token)).status == 200
    stamp = server.app.db.freshness(ANY_WRITE)
    assert (await server.app.jobs.run_once("credentials.cleanup"))["tokens"] == 1
    assert server.app.db.freshness(ANY_WRITE) == stamp


@pytest.mark.gen_test(timeout=30)
async def test_cleanup_deletes_revoked_invites_and_keeps_the_others(api, server):
    ana = await register(api, "Ana")
    ws = await workspace_with(api, ana)
    path = f"/workspaces/{ws['id']}/invites"
    kept, revoked = [(await api.post(path, {"expires_in_days": 1}, token=ana.token)).json["data"] for _ in range(2)]
    assert (await api.delete(f"{path}/{revoked['id']}", token=ana.token)).status == 204
    assert (await server.app.jobs.run_once("credentials.cleanup"))["invites"] == 1
    assert await count(server, "invites") == 1
    assert [i["id"] for i in (await api.get(path, token=ana.token)).json["data"]] == [kept["id"]]
    assert (await api.get(f"/invites/{revoked['code']}")).status == 404


@pytest.mark.gen_test(timeout=30)
async def test_cleanup_deletes_invites_30_days_after_they_expired(api, server, clock):
    """An expired invite stays in the admin's list for a while (what lapsed), then goes."""
    ana = await register(api, "Ana")
    ws = await workspace_with(api, ana)
    path = f"/workspaces/{ws['id']}/invites"
    short = (await api.post(path, {"expires_in_days": 1}, token=ana.token)).json["data"]
    clock.advance(days=20)
    later = (await api.post(path, {"expires_in_days": 30}, token=ana.token)).json["data"]
    clock.advance(days=11)  # the first expired exactly 30 days ago: still listed
    assert (await server.app.jobs.run_once("credentials.cleanup"))["invites"] == 0
    assert {i["id"] for i in (await api.get(path, token=ana.token)).json["data"]} == {short["id"], later["id"]}
    clock.advance(seconds=1)
    assert (await server.app.jobs.run_once("credentials.cleanup"))["invites"] == 1
    assert [i["id"] for i in (await api.get(path, token=ana.token)).json["data"]] == [later["id"]]
