"""The API key: checked on every route, and the rule that an unkeyed server stays on loopback.

A client presents the key as `Authorization: Bearer KEY` (what the OpenAI clients send) or, for the browser
UI, as the `pixiu_key` cookie. `GET ...?key=KEY` is accepted too and sets that cookie (HttpOnly, SameSite
Strict), so opening /ui?key=KEY once logs a browser in. The middleware guards every path, the docs and
static files included; `require_key` is the same check as a FastAPI dependency for routers that want it.
uvicorn's access log writes each request line, query string included: `redact_logs` masks the key there.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import sys

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection

from pixiu.serve.protocol import ErrorBody, ErrorResponse

COOKIE = "pixiu_key"
LOOPBACK_NAMES = ("localhost",)
UNAUTHORIZED = "missing or wrong API key: send 'Authorization: Bearer KEY'"


def presented(conn: HTTPConnection) -> tuple[list[str], bool]:
    """The keys a request carries, and whether one came in the query string (then we set the cookie)."""
    scheme, _, token = conn.headers.get("authorization", "").partition(" ")
    keys = [token.strip()] if scheme.lower() == "bearer" and token.strip() else []
    if conn.cookies.get(COOKIE):
        keys.append(conn.cookies[COOKIE])
    query = conn.scope.get("method") == "GET" and conn.query_params.get("key")
    return (keys + [query]) if query else keys, bool(query)


def matches(candidates: list[str], key: str) -> bool:
    # compare_digest: the time taken must not reveal how much of a guess was right
    return any(hmac.compare_digest(c.encode(), key.encode()) for c in candidates)


def require_key(request: Request) -> None:
    """FastAPI dependency: 401 unless the request carries the app's API key (no-op when none is set)."""
    key = getattr(request.app.state, "api_key", None)
    if key and not matches(presented(request)[0], key):
        raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})


class KeyCheck:
    """ASGI middleware: every HTTP and websocket request needs the key, except GET on `open_paths`, whose
    routes check it themselves (the UI page answers 401 with a login form there)."""

    def __init__(self, app, key: str, open_paths: tuple[str, ...] = ()):
        self.app, self.key, self.open_paths = app, key, open_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        conn = HTTPConnection(scope)
        keys, from_query = presented(conn)
        ok = matches(keys, self.key)
        if ok and from_query:
            send = with_cookie(send, self.key)
        if ok or (scope.get("method") == "GET" and scope["path"] in self.open_paths):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        body = ErrorResponse(
            error=ErrorBody(message=UNAUTHORIZED, type="authentication_error", code="invalid_api_key")
        )
        res = JSONResponse(body.model_dump(), status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await res(scope, receive, send)


def with_cookie(send, key: str):
    """Add the key cookie to the response, unless the route set it itself (GET /ui?key=K does): two
    Set-Cookie headers for one name leave the browser to pick one."""
    cookie = f"{COOKIE}={key}; Path=/; HttpOnly; SameSite=Strict".encode()
    ours = f"{COOKIE}=".encode()

    async def sending(message):
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if not any(k.lower() == b"set-cookie" and v.startswith(ours) for k, v in headers):
                message = {**message, "headers": [*headers, (b"set-cookie", cookie)]}
        await send(message)

    return sending


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_bind(host: str, key: str | None, insecure: bool) -> None:
    """Exit with the reason when asked to listen beyond loopback with no key and no --insecure."""
    if key or insecure or is_loopback(host):
        return
    sys.exit(
        f"refusing to listen on {host} without an API key: anyone who can reach this machine could use the "
        "models and write to the feedback store. Set --api-key KEY (or PIXIU_API_KEY), or pass --insecure "
        "if this network is trusted."
    )


# `key=...` in a query string and the credential of an Authorization header, wherever a log line carries them
SECRETS = re.compile(r"(?i)((?:[?&;]|\b)(?:key|api_key)=|(?:bearer|basic)\s+)[^\s&;\"']+")
REDACTED = "***"
LOGGERS = ("uvicorn.access", "uvicorn.error")


class RedactKeys(logging.Filter):
    """Masks API keys in a record's message and arguments before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def redact(text: str) -> str:
    return SECRETS.sub(lambda m: m.group(1) + REDACTED, text)


def redact_logs() -> None:
    """Put the filter on uvicorn's loggers (once). Logger filters survive uvicorn's own logging setup, which
    replaces handlers but keeps filters."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactKeys) for f in logger.filters):
            logger.addFilter(RedactKeys())
