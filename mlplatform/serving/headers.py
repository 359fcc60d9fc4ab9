"""Response headers every answer of the serving app carries.

``X-Content-Type-Options: nosniff`` on every response (JSON, files, pages, errors, the fast
path), and a Content-Security-Policy that allows nothing on any response that does not set its
own (the review page, reports and docs pages set theirs).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

NOSNIFF = (b"x-content-type-options", b"nosniff")
DEFAULT_CSP = (
    b"content-security-policy",
    b"default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
)


class SecurityHeaders:
    """Pure ASGI middleware adding ``nosniff`` (always) and the default CSP (when absent)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                names = {name.lower() for name, _ in headers}
                if NOSNIFF[0] not in names:
                    headers.append(NOSNIFF)
                if DEFAULT_CSP[0] not in names:
                    headers.append(DEFAULT_CSP)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
