"""What every handler of the control API shares: the app's keys, RFC 9457 problem
documents (and the middleware that turns errors into them), reading a JSON body and
parsing it with its model, and integer query parameters.

Nothing here logs a request body, so no MSISDN or secret reaches a log line.
"""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from control.view import ANYONE, Caller, Forbidden, GatewayView, InputError, Unavailable

log = logging.getLogger("control.api")
VIEW: web.AppKey[GatewayView] = web.AppKey("view", GatewayView)
# The OpenAPI document, built from the route table when the app is made (handlers do
# not import the document's builder: it reads the table that names the handlers).
DOCUMENT: web.AppKey[dict[str, Any]] = web.AppKey("document", dict)
CALLER: web.RequestKey[Caller] = web.RequestKey("caller", Caller)

MAX_URL = 8192  # bytes of path and query; longer is a 414 problem
# The request line aiohttp reads before it answers with a plain-text 400 of its own:
# far above MAX_URL, so a long URL reaches problems_middleware and gets a problem.
MAX_REQUEST_LINE = 1 << 20
MAX_BODY = 4 * 1024 * 1024  # bytes of a request body; more is a 413 problem
MAX_DEPTH = 32  # JSON nesting: the deepest body of the API has 4 levels


def caller(request: web.Request) -> Caller:
    """Who calls (set by the auth middleware; anyone when the API is open)."""
    found: Caller = request.get(CALLER, ANYONE)
    return found


def problem(status: int, title: str, detail: str = "",
            errors: list[tuple[str, str]] | None = None,
            extra: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = [{"field": f, "message": m} for f, m in errors]
    body.update(extra or {})
    return web.json_response(body, status=status, content_type="application/problem+json")


def outage(exc: BaseException) -> bool:
    """Whether an exception says a dependency (database, Redis, a socket) is away, so
    the answer is 503 and a retry later may work."""
    import sqlite3

    import asyncpg
    import redis.exceptions

    return isinstance(exc, (
        OSError, TimeoutError, sqlite3.OperationalError,
        asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
        asyncpg.CannotConnectNowError, asyncpg.exceptions.OperatorInterventionError,
        asyncpg.exceptions.InsufficientResourcesError,
        redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
    ))


@web.middleware
async def problems_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    if len(request.raw_path) > MAX_URL:
        return problem(414, "URI too long", f"the URL has {len(request.raw_path)} bytes,"
                       f" at most {MAX_URL}", [("url", f"at most {MAX_URL} bytes")])
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except InputError as exc:
        response = problem(exc.status, exc.title, str(exc), exc.problems, exc.extra)
        response.headers.update(exc.headers)
    except Forbidden as exc:
        response = problem(403, "Forbidden", str(exc), [(exc.field, str(exc))])
    except Unavailable as exc:
        response = problem(503, "Service unavailable", str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = problem(exc.status, exc.reason or "Error", exc.text or "")
        if "Allow" in exc.headers:  # 405 must say what is allowed (RFC 9110)
            response.headers["Allow"] = exc.headers["Allow"]
    except Exception as exc:
        if outage(exc):
            response = problem(503, "Service unavailable",
                               f"a dependency is unreachable ({type(exc).__name__})")
            response.headers["Retry-After"] = "5"
        else:  # a bug: logged with its traceback; the caller learns nothing of the insides
            log.error("unexpected error answering %s %s", request.method,
                      request.match_info.route.resource.canonical
                      if request.match_info.route.resource else "?",
                      exc_info=exc, extra={"event": "api_error"})
            response = problem(500, "Internal server error",
                               "an unexpected error; the daemon logged it")
    return response


async def read_json(request: web.Request) -> Any:
    if request.content_type not in ("application/json", ""):
        raise InputError([("body", "Content-Type must be application/json")], status=415,
                         title="Unsupported media type")
    nested = InputError([("body", f"nested deeper than {MAX_DEPTH} levels")], status=400,
                        title="Malformed JSON")
    try:
        body = json.loads(await request.read() or b"null")
    except RecursionError:
        raise nested from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError([("body", f"not valid JSON: {exc}")], status=400,
                         title="Malformed JSON") from None
    if _too_deep(body):
        raise nested
    return body


async def read_object(request: web.Request) -> dict[str, Any]:
    """The body, which must be a JSON object (422 naming body otherwise)."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InputError([("body", "must be a JSON object")])
    return body


def _too_deep(value: Any) -> bool:
    """Whether JSON nests deeper than MAX_DEPTH (walked without recursion: what comes
    next, validation and hashing, recurses)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return True
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict)
                                                  else item))
    return False


M = TypeVar("M", bound=BaseModel)


def _integral(value: Any) -> Any:
    """JSON has one number type: 5.0 is the integer 5 (the models are strict otherwise)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def parse(model: type[M], body: dict[str, Any]) -> M:
    """The body as ``model``; a 422 naming each bad field otherwise."""
    try:
        return model.model_validate(_integral(body))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "body"
            problems.append((field, str(err["msg"]).removeprefix("Value error, ")))
        raise InputError(problems) from None


def query_integer(request: web.Request, name: str, default: int, low: int, high: int,
                  problems: list[tuple[str, str]]) -> int:
    """A query parameter that must be an integer from low to high (ASCII digits)."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw.isascii() and raw.isdigit() and len(raw) <= 19 and low <= int(raw) <= high:
        return int(raw)
    problems.append((name, f"an integer from {low} to {high}"))
    return default
