"""A pure-ASGI shortcut for the hot route, ``POST /v1/projects/{project}/predict``.

FastAPI's dependency solving costs more than a one-row prediction, so a successful small
predict is answered here, in front of the framework, with the very same pieces the FastAPI
route uses: the Authenticator (reader rule), the production service, the predict contract
(``serving.predict``: per-bundle validator and fast predictor, the answer bytes) and the
metrics. Anything else — a missing or unknown token, an unknown project, no production yet, an
invalid body, a large batch — falls through, body replayed, to the FastAPI route, which gives
the documented answer. So this changes speed, never answers. The token and the project are
checked before any of the body is read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlplatform.bundles.format import Bundle
from mlplatform.serving.auth import Authenticator
from mlplatform.serving.predict import answer
from mlplatform.serving.predictor import FastPredictor
from mlplatform.serving.rows import PredictValidator

PREDICT_PATH = re.compile(r"^/v1/projects/([^/]+)/predict$")
MAX_FAST_BODY = 64 * 1024


class PredictFastPath:
    """Answer successful small predicts directly; replay everything else to the app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator,
        production: Callable[[str], Bundle | None],
        compiled: Callable[[Bundle], tuple[PredictValidator, FastPredictor]],
        on_predicted: Callable[[str, Bundle, int], None],
        route: Any,
        inline_rows: int,
    ):
        self.app = app
        self.authenticator = authenticator
        self.production = production
        self.compiled = compiled
        self.on_predicted = on_predicted
        self.route = route
        self.inline_rows = inline_rows

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (
            PREDICT_PATH.match(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        project = match.group(1) if match is not None else ""
        bundle = self._bundle(project, scope) if match is not None else None
        if bundle is None:  # not for us, or refused: the app answers before reading the body
            await self.app(scope, receive, send)
            return
        chunks, more = await _read_some(receive, MAX_FAST_BODY)
        reply = None if more else self._answer(project, bundle, b"".join(chunks))
        if reply is None:
            await self.app(scope, _replay(chunks, more, receive), send)
            return
        scope["route"] = self.route  # metrics label it like the FastAPI route
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(reply)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": reply})

    def _bundle(self, project: str, scope: Scope) -> Bundle | None:
        """The bundle to predict with, when the request's token may read (checked first)."""
        if not self.authenticator.open_reads:
            token = _bearer(scope)
            if token is None or self.authenticator.identify(token) is None:
                return None
        return self.production(project)

    def _answer(self, project: str, bundle: Bundle, body: bytes) -> bytes | None:
        validator, predictor = self.compiled(bundle)
        try:
            rows = validator.rows(body)
        except ValidationError:
            return None
        if len(rows) > self.inline_rows:
            return None
        reply = answer(bundle, predictor, rows)
        self.on_predicted(project, bundle, len(rows))
        return reply


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


async def _read_some(receive: Receive, limit: int) -> tuple[list[bytes], bool]:
    """Body chunks up to ``limit`` bytes; True when more is still to come."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return chunks, False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return chunks, False
        if size > limit:
            return chunks, True


def _replay(chunks: list[bytes], more: bool, receive: Receive) -> Receive:
    """A receive that yields what was already read, then continues with the original."""
    pending = list(chunks)

    async def replayed() -> Message:
        if pending:
            body = pending.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(pending) or more}
        return await receive()  # the rest of a long body, or the disconnect

    return replayed
