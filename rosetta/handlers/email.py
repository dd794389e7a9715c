"""Email verification: the signed link and the resend action."""

from __future__ import annotations

from rosetta.handlers.base import BaseHandler

HOUR_S = 3600


class VerifyEmailHandler(BaseHandler):
    """``GET /auth/email/verify/{id}/{hash}?expires&signature``: public, the signature is the credential."""

    public = True

    async def get(self, user_id: str, hashed: str) -> None:
        self.rate_limit("email-verify-address", self.address_key(), self.app.config.limits.login_per_minute, 60)
        await self.app.verification.verify(user_id.lower(), hashed.lower(), self.get_query_argument("expires", ""),
                                           self.get_query_argument("signature", ""))
        frontend = self.app.config.auth.frontend_url
        if frontend:
            self.redirect(frontend, status=302)
            return
        self.send_json({"message": "Email verified successfully."})


class VerificationNotificationHandler(BaseHandler):
    async def post(self) -> None:
        assert self.principal
        # The mail-sending cap of one-time codes bounds these mails too.
        self.rate_limit("email-verify-send", self.principal.user_id, self.app.config.limits.otp_send_per_hour, HOUR_S)
        await self.app.verification.resend(self.principal)
        self.send_json({"message": "Verification email sent."})


ROUTES = [
    (r"/auth/email/verify/([^/]{1,64})/([^/]{1,128})", VerifyEmailHandler),
    ("/auth/email/verification-notification", VerificationNotificationHandler),
]
