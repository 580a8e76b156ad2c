"""Security headers on every response: CSP, HSTS, nosniff, Referrer-Policy, framing."""

from __future__ import annotations

from bastion.settings.sections import SecuritySection
from bastion.types import ASGIApp, Message, Receive, Scope, Send


class SecurityHeadersMiddleware:
    """Adds the configured security headers unless the response already set them.

    ``/docs`` gets its own Content-Security-Policy: Swagger UI starts from an inline
    script, which the API's strict policy forbids.

    Args:
        settings: The ``[security]`` section.
        hsts: Send ``Strict-Transport-Security`` (production by default).
    """

    def __init__(self, app: ASGIApp, *, settings: SecuritySection, hsts: bool) -> None:
        self.app = app
        common = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", settings.referrer_policy.encode()),
            (b"x-frame-options", b"DENY"),
        ]
        if hsts:
            value = f"max-age={settings.hsts_max_age_s}; includeSubDomains"
            common.append((b"strict-transport-security", value.encode()))
        self.api_headers = [
            *common,
            (b"content-security-policy", settings.content_security_policy.encode()),
        ]
        self.docs_headers = [
            *common,
            (b"content-security-policy", settings.docs_content_security_policy.encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.docs_headers if scope["path"].startswith("/docs") else self.api_headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend((name, value) for name, value in extra if name not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
