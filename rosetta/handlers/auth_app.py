"""App (bearer-token) sign-in beyond passwords: email one-time codes and password reset.

HTTP only: validate, rate-limit (per account and per client address), call the service, answer in
the reference's shapes. The web twins in auth_web.py reuse the ``Signin*`` helpers here.
"""

from __future__ import annotations

import re

from rosetta.errors import Invalid
from rosetta.handlers.accounts import token_response
from rosetta.handlers.base import BaseHandler
from rosetta.handlers.validate import Validator
from rosetta.services.otp import INVALID_OTP

OTP_RE = re.compile(r"^[0-9]{6}$")
HOUR_S = 3600


class SigninHandler(BaseHandler):
    """Shared input and rate-limit steps of the public sign-in routes (app and web)."""

    public = True

    def limit_address(self, route: str) -> None:
        """Every sign-in route: at most ``limits.login_per_minute`` tries per client address."""
        self.rate_limit(f"{route}-address", self.address_key(), self.app.config.limits.login_per_minute, 60)

    def email_only(self) -> str:
        v = Validator(self.json_body())
        email = v.email()
        v.done()
        assert email is not None
        return email

    def otp_input(self) -> tuple[str, str, str | None]:
        v = Validator(self.json_body())
        email = v.email()
        token = v.string("token", required=True, max_len=32)
        device = v.string("device_name", max_len=255)
        v.done()
        assert email is not None and token is not None
        return email, token, device

    def reset_input(self) -> tuple[str, str, str]:
        v = Validator(self.json_body())
        token = v.string("token", required=True, max_len=200)
        email = v.email()
        password = v.password(confirm=True)
        v.done()
        assert token is not None and email is not None and password is not None
        return email, token, password

    async def send_otp(self) -> None:
        email = self.email_only()
        self.limit_address("otp")
        self.rate_limit("otp-send", email, self.app.config.limits.otp_send_per_hour, HOUR_S)
        await self.app.otp.request(email)
        self.send_json({"message": "OTP sent to your email."})

    def check_otp_shape(self, email: str, token: str) -> None:
        self.limit_address("otp-verify")
        self.rate_limit("otp-verify", email, self.app.config.limits.otp_verify_per_hour, HOUR_S)
        if not OTP_RE.match(token):
            raise Invalid.one("token", INVALID_OTP)

    async def forgot(self) -> None:
        email = self.email_only()
        self.limit_address("forgot")
        self.rate_limit("password-reset", email, self.app.config.limits.password_reset_per_hour, HOUR_S)
        await self.app.password_resets.forgot(email)
        self.send_json({"message": "Password reset link sent to your email."})

    async def reset(self) -> None:
        email, token, password = self.reset_input()
        self.limit_address("reset")
        self.rate_limit("password-reset-try", email, self.app.config.limits.password_reset_per_hour, HOUR_S)
        await self.app.password_resets.reset(email, token, password)
        self.send_json({"message": "Password has been reset successfully."})


class AppOtpHandler(SigninHandler):
    async def post(self) -> None:
        await self.send_otp()


class AppOtpVerifyHandler(SigninHandler):
    async def post(self) -> None:
        email, token, device = self.otp_input()
        self.check_otp_shape(email, token)

        signed = await self.app.otp.verify(email, token, self.app.accounts.token_sign_in(device))
        self.send_json(token_response(signed))  # type: ignore[arg-type]


class AppForgotPasswordHandler(SigninHandler):
    async def post(self) -> None:
        await self.forgot()


class AppResetPasswordHandler(SigninHandler):
    async def post(self) -> None:
        await self.reset()


ROUTES = [
    ("/auth/app/otp", AppOtpHandler),
    ("/auth/app/otp/verify", AppOtpVerifyHandler),
    ("/auth/app/forgot-password", AppForgotPasswordHandler),
    ("/auth/app/reset-password", AppResetPasswordHandler),
]
