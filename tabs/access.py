"""Who reaches the server, as an ASGI middleware on Gradio's FastAPI app: logins slowed down after repeated failures
from one client address, and, with --auth, the API's description kept from whoever has not logged in.

Gradio (6.31) already refuses /config, /gradio_api/info and /gradio_api/openapi.json without the login, but embeds the
API description in the page it serves at `/` to everyone, and its `auth=` function is not told the client's address.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque

from starlette.requests import HTTPConnection

log = logging.getLogger(__name__)

# Wrong passwords from one address within the window that cost nothing; each one after waits a second longer than
# the last, up to the cap. 30 wrong passwords then take minutes, not 0.28 s, and the right one still gets in.
FREE_LOGIN_FAILURES = 5
LOGIN_FAILURE_WINDOW_S = 15 * 60
LOGIN_DELAY_STEP_S = 1.0
LOGIN_DELAY_CAP_S = 10.0
_API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.DOTALL)
_NO_API_INFO = b"window.gradio_api_info = null;</script>"


def login_delay_s(failures: int) -> float:
    """How long the next try waits after `failures` recent wrong passwords from its address."""
    over = failures - FREE_LOGIN_FAILURES + 1
    return min(over * LOGIN_DELAY_STEP_S, LOGIN_DELAY_CAP_S) if over > 0 else 0.0


class AccessGuard:
    """Passed to Gradio as `app_kwargs={"middleware": [Middleware(AccessGuard)]}`."""

    def __init__(self, app):
        self.app = app
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
        else:
            await self.app(scope, receive, send)

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
    if getattr(app, "auth", None) is None:
        return True
    cookies = HTTPConnection(scope).cookies
    token = cookies.get(f"access-token-{app.cookie_id}") or cookies.get(f"access-token-unsecure-{app.cookie_id}")
    return token is not None and token in app.tokens
