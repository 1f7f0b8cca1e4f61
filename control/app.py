"""The control API v1 (aiohttp), served in the daemon's own event loop.

Errors are RFC 9457 problem details naming the field. Nothing here logs a request
body, so no MSISDN or secret reaches a log line.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from control import handlers
from control.auth import Authenticator
from control.view import Forbidden, GatewayView, InputError, Unavailable

log = logging.getLogger("control.api")
VIEW: web.AppKey[GatewayView] = web.AppKey("view", GatewayView)
MAX_BULK = 1000
EVENT_KINDS = ("dlr", "mo")


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


MAX_URL = 8192  # bytes of path and query; longer is a 414 problem
# The request line aiohttp reads before it answers with a plain-text 400 of its own:
# far above MAX_URL, so a long URL reaches problems_middleware and gets a problem.
MAX_REQUEST_LINE = 1 << 20


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


MAX_DEPTH = 32  # JSON nesting: the deepest body of the API has 4 levels


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


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready, detail = await request.app[VIEW].readiness()
    return web.json_response({"ready": ready, **detail}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    data = generate_latest(request.app[VIEW].registry)
    return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def list_operators(request: web.Request) -> web.Response:
    return web.json_response({"operators": request.app[VIEW].operator_statuses()})


async def get_operator(request: web.Request) -> web.Response:
    status = request.app[VIEW].operator_status(request.match_info["id"])
    if status is None:
        return problem(404, "Not found", f"no operator {request.match_info['id']!r}")
    return web.json_response(status)


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (1 <= len(key) <= 128 and all("!" <= c <= "~" for c in key)):
        raise InputError([("Idempotency-Key", "1 to 128 visible ASCII characters (no spaces)")],
                         status=400)
    return key


async def post_message(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InputError([("body", "must be a JSON object")])
    caller = handlers.caller(request)
    caller.check(body.get("tenant_id"))
    results = await request.app[VIEW].submit([body], _idempotency_key(request), caller)
    return web.json_response(results[0], status=202)


async def post_bulk(request: web.Request) -> web.Response:
    body = await read_json(request)
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages:
        raise InputError([("messages", "must be a non-empty array of messages")])
    if len(messages) > MAX_BULK:
        raise InputError([("messages", f"at most {MAX_BULK} messages per request")],
                         status=413, title="Too many messages")
    caller = handlers.caller(request)
    for index, message in enumerate(messages):
        if isinstance(message, dict):
            caller.check(message.get("tenant_id"), f"messages[{index}].tenant_id")
    results = await request.app[VIEW].submit(messages, _idempotency_key(request), caller)
    return web.json_response({"accepted": results}, status=202)


async def get_message(request: web.Request) -> web.Response:
    found = await request.app[VIEW].message(request.match_info["id"])
    if found is None:
        return problem(404, "Not found", f"no message {request.match_info['id']!r}")
    if not handlers.caller(request).may_act_for(str(found.get("tenant_id"))):
        # Not naming the tenant: whose message it is is not this caller's business.
        raise Forbidden("this token may not act for the tenant of this message")
    return web.json_response(found)


def _integer(request: web.Request, name: str, default: int, low: int, high: int,
             problems: list[tuple[str, str]]) -> int:
    """A query parameter that must be an integer from low to high (ASCII digits)."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw.isascii() and raw.isdigit() and len(raw) <= 19 and low <= int(raw) <= high:
        return int(raw)
    problems.append((name, f"an integer from {low} to {high}"))
    return default


async def list_events(request: web.Request) -> web.Response:
    kind = request.query.get("kind", "dlr")
    problems = []
    if kind not in EVENT_KINDS:
        problems.append(("kind", f"one of {', '.join(EVENT_KINDS)}"))
    after = _integer(request, "after", 0, 0, 2**63 - 1, problems)
    limit = _integer(request, "limit", 100, 1, 1000, problems)
    if problems:
        raise InputError(problems, status=400)
    # A token limited to tenants sees the events of their messages only (no MO).
    caller = handlers.caller(request)
    tenants = caller.tenants
    tenant = request.query.get("tenant_id")
    if tenant is not None:
        caller.check(tenant)
        tenants = frozenset({tenant})
    events = await request.app[VIEW].events(kind, after, limit, tenants)
    return web.json_response({"events": events})


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


async def post_reload(request: web.Request) -> web.Response:
    # An invalid config raises InputError (422, the problems by key); nothing changes.
    return web.json_response(await request.app[VIEW].reload())


async def put_log_level(request: web.Request) -> web.Response:
    body = await read_json(request)
    level = body.get("level") if isinstance(body, dict) else None
    if not isinstance(level, str) or level.upper() not in LOG_LEVELS:
        raise InputError([("level", f"one of {', '.join(LOG_LEVELS)}")])
    return web.json_response(request.app[VIEW].set_log_level(level.upper()))


def create_app(view: GatewayView, auth: Authenticator | None = None,
               metrics_public: bool = True) -> web.Application:
    """The app; ``auth`` None or without tokens leaves every endpoint open."""
    middlewares = [problems_middleware]
    if auth is not None and auth.enabled:
        middlewares.append(handlers.auth_middleware(auth, metrics_public))
    app = web.Application(middlewares=middlewares, client_max_size=4 * 1024 * 1024,
                          handler_args={"max_line_size": MAX_REQUEST_LINE})
    app[VIEW] = view
    handlers.add_routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/operators", list_operators)
    app.router.add_get("/v1/operators/{id}", get_operator)
    app.router.add_post("/v1/messages", post_message)
    app.router.add_post("/v1/messages/bulk", post_bulk)
    app.router.add_get("/v1/messages/{id}", get_message)
    app.router.add_get("/v1/events", list_events)
    app.router.add_post("/v1/admin/reload", post_reload)
    app.router.add_put("/v1/admin/log-level", put_log_level)
    return app
