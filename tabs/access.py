"""Who reaches the server, as an ASGI middleware on Gradio's FastAPI app: logins slowed down after repeated failures
from one client address; with --auth, the API's description kept from whoever has not logged in, and each person's
files kept from the others; and a client's cancel of a request passed on to our queue as a Stop.

Gradio (6.31) already refuses /config, /gradio_api/info and /gradio_api/openapi.json without the login, but embeds the
API description in the page it serves at `/` to everyone, and its `auth=` function is not told the client's address.
It serves every file under `allowed_paths` (the whole outputs folder) to anyone logged in. Its `/cancel` route cancels
the asyncio task of the request, which cannot stop a handler running in a worker thread, nor one waiting in our queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections import deque
from pathlib import Path
from typing import Callable

from starlette.requests import HTTPConnection

from pipelines.outputs import OutputStore

log = logging.getLogger(__name__)

# Wrong passwords from one address within the window that cost nothing; each one after waits a second longer than
# the last, up to the cap. 30 wrong passwords then take minutes, not 0.28 s, and the right one still gets in.
FREE_LOGIN_FAILURES = 5
LOGIN_FAILURE_WINDOW_S = 15 * 60
LOGIN_DELAY_STEP_S = 1.0
LOGIN_DELAY_CAP_S = 10.0
_API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.DOTALL)
_NO_API_INFO = b"window.gradio_api_info = null;</script>"
# Gradio's routes that serve a file by its path (`/gradio_api/file=<path>`, and the older `/gradio_api/file/<path>`).
_FILE_ROUTE = re.compile(r"/gradio_api/file(?:=|/)(?P<path>.+)")
_CANCEL_ROUTE = re.compile(r"/gradio_api/cancel/?")
# A cancel's body is three short strings.
CANCEL_BODY_LIMIT_BYTES = 64 * 1024


def login_delay_s(failures: int) -> float:
    """How long the next try waits after `failures` recent wrong passwords from its address."""
    over = failures - FREE_LOGIN_FAILURES + 1
    return min(over * LOGIN_DELAY_STEP_S, LOGIN_DELAY_CAP_S) if over > 0 else 0.0


class AccessGuard:
    """Passed to Gradio as `app_kwargs={"middleware": [Middleware(AccessGuard, outputs=..., on_cancel=...)]}`.

    `outputs`: the outputs folder; with logins, a file under it is served only from the asking person's own folder.
    `on_cancel(session_hash, event_id)`: told of every cancel a client sends (`JobQueue.cancel`)."""

    def __init__(
        self, app, outputs: OutputStore | None = None, on_cancel: Callable[[str, str], object] | None = None,
    ):
        self.app = app
        self.outputs = outputs
        self.on_cancel = on_cancel
        self.failures: dict[str, deque[float]] = {}
        # One login try at a time per address: tries sent in parallel wait their turn, so they are slowed too.
        self.turns: dict[str, asyncio.Lock] = {}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/login"):
            await self._login(scope, receive, send)
        elif scope["method"] == "GET" and scope["path"] == "/" and not _logged_in(scope):
            await self._page_without_api_info(scope, receive, send)
        elif scope["method"] in ("GET", "HEAD") and (served := _FILE_ROUTE.fullmatch(scope["path"])):
            if self._someone_elses(scope, served.group("path")):
                await _refuse(send, 403, b"File not allowed: it belongs to another login.")
            else:
                await self.app(scope, receive, send)
        elif scope["method"] == "POST" and _CANCEL_ROUTE.fullmatch(scope["path"]) and self.on_cancel is not None:
            await self._cancel(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _someone_elses(self, scope, path: str) -> bool:
        """Whether, with logins, `path` lies in the outputs folder but not in the asking person's own folder (another
        person's result, or one made before the app had logins). Links are followed, as Gradio follows them."""
        user = _login(scope)
        if self.outputs is None or user is None:
            return False
        try:
            wanted = Path(os.path.abspath(path)).resolve()
            root = self.outputs.root.resolve()
            own = self.outputs.for_user(user).root.resolve()
        except (OSError, RuntimeError, ValueError):  # RuntimeError: a loop of links; ValueError: a NUL in the path
            return True
        return wanted.is_relative_to(root) and not wanted.is_relative_to(own)

    async def _cancel(self, scope, receive, send) -> None:
        """Tell our queue which request the client cancelled, then let Gradio handle the cancel as it does."""
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > CANCEL_BODY_LIMIT_BYTES:
                await _refuse(send, 413, b"A cancel request is a few short fields.")
                return
        try:
            fields = json.loads(body)
            session, event = str(fields["session_hash"]), str(fields["event_id"])
        except (ValueError, KeyError, TypeError):
            pass  # not a cancel Gradio would accept either; it answers that itself
        else:
            if self.on_cancel(session, event):
                log.info("a client cancelled its job (request %s); stopping it", event)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _login(self, scope, receive, send) -> None:
        client = (scope.get("client") or ("unknown",))[0]
        async with self.turns.setdefault(client, asyncio.Lock()):
            failures = self._recent_failures(client)
            if delay_s := login_delay_s(len(failures)):
                await asyncio.sleep(delay_s)
            statuses = []

            async def noting_status(message):
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])
                await send(message)

            await self.app(scope, receive, noting_status)
            if statuses[:1] == [200]:
                self.failures.pop(client, None)
            else:
                failures.append(time.monotonic())
                if len(failures) == FREE_LOGIN_FAILURES:
                    log.warning("%d wrong logins from %s; its further tries are slowed down", len(failures), client)

    def _recent_failures(self, client: str) -> deque[float]:
        failures = self.failures.setdefault(client, deque())
        while failures and failures[0] < time.monotonic() - LOGIN_FAILURE_WINDOW_S:
            failures.popleft()
        return failures

    async def _page_without_api_info(self, scope, receive, send) -> None:
        """The page as Gradio makes it, less the API description (the page's script fetches it after the login)."""
        start, chunks = {}, []

        async def rewriting(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = _API_INFO.sub(_NO_API_INFO, b"".join(chunks))
            headers = [(key, value) for key, value in start["headers"] if key.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewriting)


def _logged_in(scope) -> bool:
    """Whether this request carries a login Gradio gave out (always true when the app has no login)."""
    app = scope.get("app")
    return getattr(app, "auth", None) is None or _login(scope) is not None


def _login(scope) -> str | None:
    """The login name whose token this request carries; None without one, or when the app has no logins."""
    app = scope.get("app")
    if getattr(app, "auth", None) is None:
        return None
    cookies = HTTPConnection(scope).cookies
    token = cookies.get(f"access-token-{app.cookie_id}") or cookies.get(f"access-token-unsecure-{app.cookie_id}")
    return app.tokens.get(token) if token is not None else None


async def _refuse(send, status: int, text: bytes) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(text)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text})
