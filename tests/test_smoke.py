import pytest

from tests.support import register


@pytest.mark.gen_test
async def test_register_me_workspace_post_read(api):
    ana = await register(api, "Ana", "en")
    me = await api.get("/me", token=ana.token)
    assert me.status == 200 and me.json["email"] == "ana@example.test"
    created = await api.post("/workspaces", {"name": "Home Lab"}, token=ana.token)
    assert created.status == 201, created
    ws = created.json["data"]
    assert ws["slug"] == "home-lab" and ws["my_role"] == "owner" and ws["member_count"] == 1
    channels = await api.get(f"/workspaces/{ws['id']}/channels", token=ana.token)
    general = channels.json["data"][0]
    path = f"/workspaces/{ws['id']}/channels/{general['id']}/messages"
    sent = await api.post(path, {"content": "hi"}, token=ana.token)
    assert sent.status == 201, sent
    listed = await api.get(f"/workspaces/{ws['id']}/channels/{general['id']}/messages", token=ana.token)
    assert [m["original_content"] for m in listed.json["data"]] == ["hi"]
