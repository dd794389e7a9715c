"""Push devices: registration (the token is the identity), ownership transfer, removal, paged listing."""

import pytest

from tests.support import register

EXPO = "ExponentPushToken[abc123]"


async def add_device(api, user, token=EXPO, provider="expo", platform="ios", **extra):
    created = await api.post("/devices", {"platform": platform, "provider": provider, "push_token": token, **extra},
                             token=user.token)
    assert created.status == 201, created
    return created.json["data"]


async def my_devices(api, user, query=""):
    listed = await api.get(f"/me/devices{query}", token=user.token)
    assert listed.status == 200, listed
    return listed.json


@pytest.mark.gen_test(timeout=30)
async def test_register_is_idempotent_and_never_shows_the_token(api, clock):
    ana = await register(api, "Ana")
    first = await add_device(api, ana, device_name="Pixel", app_version="1.2.0", device_id="hw-1")
    assert set(first) == {"id", "platform", "provider", "device_name", "app_version", "last_used_at", "created_at"}
    assert (first["provider"], first["platform"], first["device_name"]) == ("expo", "ios", "Pixel")
    clock.advance(minutes=5)
    again = await add_device(api, ana, device_name="Pixel 9")
    assert again["id"] == first["id"] and again["device_name"] == "Pixel 9"
    assert again["last_used_at"] > first["last_used_at"] and again["created_at"] == first["created_at"]
    listed = await my_devices(api, ana)
    assert [d["id"] for d in listed["data"]] == [first["id"]] and listed["meta"]["total"] == 1
    assert EXPO not in str(listed) and "token" not in str(listed)


@pytest.mark.gen_test(timeout=30)
async def test_a_known_token_moves_to_the_new_account(api):
    ana, ben = await register(api, "Ana"), await register(api, "Ben")
    device = await add_device(api, ana)
    moved = await add_device(api, ben, platform="android")
    assert moved["id"] == device["id"] and moved["platform"] == "android"
    assert (await my_devices(api, ana))["data"] == []
    assert [d["id"] for d in (await my_devices(api, ben))["data"]] == [device["id"]]
    # Only the owner removes a device; others get 404, as for an unknown id.
    assert (await api.delete(f"/devices/{device['id']}", token=ana.token)).status == 404
    assert (await api.delete("/devices/not-an-id", token=ana.token)).status == 404
    assert (await api.delete(f"/devices/{device['id']}", token=ben.token)).status == 204
    assert (await my_devices(api, ben))["data"] == []
    assert (await api.delete(f"/devices/{device['id']}", token=ben.token)).status == 404


@pytest.mark.gen_test(timeout=30)
async def test_listing_filters_sorts_and_pages(api, clock):
    ana = await register(api, "Ana")
    ids = []
    for n, (provider, token) in enumerate([("expo", "ExponentPushToken[a]"), ("ntfy", "https://ntfy.sh/up-a"),
                                           ("fcm", "fcm-token-a"), ("expo", "ExpoPushToken[b]")]):
        clock.advance(minutes=1)
        ids.append((await add_device(api, ana, token=token, provider=provider, device_name=f"d{n}"))["id"])
    clock.advance(minutes=1)
    await add_device(api, ana, token="ExponentPushToken[a]")  # used again: newest last_used_at
    by_use = await my_devices(api, ana)
    assert [d["id"] for d in by_use["data"]] == [ids[0], ids[3], ids[2], ids[1]]  # default: -last_used_at
    by_created = await my_devices(api, ana, "?sort=created_at")
    assert [d["id"] for d in by_created["data"]] == ids
    expo = await my_devices(api, ana, "?provider=expo&sort=-created_at")
    assert [d["id"] for d in expo["data"]] == [ids[3], ids[0]]
    paged = await my_devices(api, ana, "?sort=created_at&per_page=3&page=2")
    assert [d["id"] for d in paged["data"]] == [ids[3]]
    assert paged["meta"] == {"current_page": 2, "per_page": 3, "total": 4, "last_page": 2}
    assert paged["links"]["prev"] is not None and paged["links"]["next"] is None
    for query, field in (("?sort=name", "sort"), ("?provider=apns", "provider"), ("?per_page=101", "per_page")):
        bad = await api.get(f"/me/devices{query}", token=ana.token)
        assert bad.status == 422 and field in bad.json["errors"], query


@pytest.mark.gen_test(timeout=30)
async def test_registration_validation(api):
    ana = await register(api, "Ana")
    cases = [
        ({"platform": "ios", "provider": "apns", "push_token": "x"}, "provider"),
        ({"platform": "toaster", "provider": "fcm", "push_token": "x"}, "platform"),
        ({"platform": "ios", "provider": "fcm"}, "push_token"),
        ({"platform": "ios", "provider": "expo", "push_token": "not-an-expo-token"}, "push_token"),
        ({"platform": "android", "provider": "ntfy", "push_token": "ftp://ntfy.example/topic"}, "push_token"),
        ({"platform": "ios", "provider": "fcm", "push_token": "x" * 5000}, "push_token"),
    ]
    for body, field in cases:
        refused = await api.post("/devices", body, token=ana.token)
        assert refused.status == 422 and field in refused.json["errors"], (body, refused)
    assert (await api.post("/devices", {"platform": "ios"})).status == 401
    assert (await my_devices(api, ana))["data"] == []


@pytest.mark.gen_test(timeout=60)
async def test_devices_per_user_are_bounded_and_the_stalest_make_room(api, clock):
    from rosetta.services.devices import MAX_DEVICES_PER_USER

    ana = await register(api, "Ana")
    first = await add_device(api, ana, token="ExponentPushToken[oldest]")
    for n in range(MAX_DEVICES_PER_USER):
        clock.advance(minutes=1)
        await add_device(api, ana, token=f"ExponentPushToken[n{n}]")
    listed = await my_devices(api, ana, "?per_page=100")
    assert listed["meta"]["total"] == MAX_DEVICES_PER_USER
    assert first["id"] not in [device["id"] for device in listed["data"]]  # the least recently used went


@pytest.mark.gen_test(timeout=30)
async def test_re_registering_a_token_updates_its_provider(api):
    ana = await register(api, "Ana")
    token = "ExponentPushToken[moved]"  # FCM checks no shape, so the same value is valid for both
    before = await add_device(api, ana, token=token, provider="fcm", platform="android")
    after = await add_device(api, ana, token=token, provider="expo", platform="android")
    assert after["id"] == before["id"] and after["provider"] == "expo"
