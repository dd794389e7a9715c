"""Push devices over HTTP: register, remove, and list one's own (paged)."""

from __future__ import annotations

from rosetta.errors import Invalid
from rosetta.handlers.base import BaseHandler
from rosetta.handlers.paging import page_body, page_params, sort_param
from rosetta.handlers.validate import Validator
from rosetta.services.devices import PLATFORMS, PROVIDERS, SORT_FIELDS, Registration, view


class DevicesHandler(BaseHandler):
    async def post(self) -> None:
        assert self.principal
        v = Validator(self.json_body())
        platform = v.string("platform", required=True, max_len=20)
        provider = v.string("provider", required=True, max_len=20)
        token = v.string("push_token", required=True, max_len=4096)
        device_name = v.string("device_name", max_len=255)
        app_version = v.string("app_version", max_len=64)
        device_id = v.string("device_id", max_len=255)
        if platform is not None and platform.lower() not in PLATFORMS:
            v.fail("platform", f"The platform must be one of: {', '.join(PLATFORMS)}.")
        if provider is not None and provider.lower() not in PROVIDERS:
            v.fail("provider", f"The provider must be one of: {', '.join(PROVIDERS)}.")
        v.done()
        assert platform is not None and provider is not None and token is not None
        row = await self.app.devices.register(self.principal, Registration(
            platform.lower(), provider.lower(), token, device_name, app_version, device_id))
        self.send_json({"data": view(row)}, 201)


class DeviceHandler(BaseHandler):
    async def delete(self, device_id: str) -> None:
        assert self.principal
        await self.app.devices.remove(self.principal, device_id)
        self.no_content()


class MyDevicesHandler(BaseHandler):
    async def get(self) -> None:
        assert self.principal
        page, per_page = page_params(self)
        sort, descending = sort_param(self, SORT_FIELDS, "-last_used_at")
        provider = self.get_query_argument("provider", None) or None
        if provider is not None and provider not in PROVIDERS:
            raise Invalid.one("provider", f"The provider must be one of: {', '.join(PROVIDERS)}.")
        rows, total = await self.app.devices.page(self.principal, provider=provider, sort=sort, descending=descending,
                                                  page=page, per_page=per_page)
        self.send_json(page_body(self, [view(row) for row in rows], total, page, per_page))


ROUTES = [
    ("/devices", DevicesHandler),
    (r"/devices/([^/]+)", DeviceHandler),
    ("/me/devices", MyDevicesHandler),
]
