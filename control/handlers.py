"""The control API's handlers: health, operators and their binds, messages, events,
admin of the daemon, SelectOperator, ValidateLease, cache invalidation, admin CRUD of
rules, prefixes and leases, dead webhook deliveries, and the status page.

Each is declared once, with its roles, models and errors, in control/routes.py; a
handler reads the daemon through the view (control/view.py) and reports bad input by
raising, which control/problems.py turns into a problem document.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, Literal, get_args

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from control.data import LeaseIn, PrefixIn, RuleIn
from control.leases import Reason
from control.plane import ControlPlane, UnknownOperator
from control.problems import (
    DOCUMENT,
    VIEW,
    caller,
    parse,
    problem,
    query_integer,
    read_json,
    read_object,
)
from control.routing import SelectRequest
from control.schemas import (
    EVENT_KIND,
    LOG_LEVEL,
    MAX_BULK,
    TENANT,
    InvalidateIn,
    OperatorPatch,
    SelectIn,
    ValidateIn,
)
from control.view import Forbidden, GatewayView, InputError, Unavailable

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TENANT_ID = re.compile(TENANT)
EVENT_KINDS: tuple[str, ...] = get_args(EVENT_KIND)
LOG_LEVELS: tuple[str, ...] = get_args(LOG_LEVEL)


def _view(request: web.Request) -> GatewayView:
    return request.app[VIEW]


def _plane(request: web.Request) -> ControlPlane:
    plane = _view(request).control
    if plane is None:
        raise Unavailable("the control plane (routing, leases) is not running")
    return plane


def _not_found(what: str) -> web.HTTPNotFound:
    return web.HTTPNotFound(text=f"no {what}")


# --------------------------------------------------------------------------- health, daemon


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready, detail = await _view(request).readiness()
    return web.json_response({"ready": ready, **detail}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    data = generate_latest(_view(request).registry)
    return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def list_operators(request: web.Request) -> web.Response:
    return web.json_response({"operators": _view(request).operator_statuses()})


async def get_operator(request: web.Request) -> web.Response:
    status = _view(request).operator_status(request.match_info["id"])
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
    body = await read_object(request)
    who = caller(request)
    who.check(body.get("tenant_id"))
    results = await _view(request).submit([body], _idempotency_key(request), who)
    return web.json_response(results[0], status=202)


async def post_bulk(request: web.Request) -> web.Response:
    body = await read_json(request)
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages:
        raise InputError([("messages", "must be a non-empty array of messages")])
    if len(messages) > MAX_BULK:
        raise InputError([("messages", f"at most {MAX_BULK} messages per request")],
                         status=413, title="Too many messages")
    who = caller(request)
    for index, message in enumerate(messages):
        if isinstance(message, dict):
            who.check(message.get("tenant_id"), f"messages[{index}].tenant_id")
    results = await _view(request).submit(messages, _idempotency_key(request), who)
    return web.json_response({"accepted": results}, status=202)


async def get_message(request: web.Request) -> web.Response:
    found = await _view(request).message(request.match_info["id"])
    if found is None:
        return problem(404, "Not found", f"no message {request.match_info['id']!r}")
    if not caller(request).may_act_for(str(found.get("tenant_id"))):
        # Not naming the tenant: whose message it is is not this caller's business.
        raise Forbidden("this token may not act for the tenant of this message")
    return web.json_response(found)


async def list_events(request: web.Request) -> web.Response:
    kind = request.query.get("kind", "dlr")
    problems = []
    if kind not in EVENT_KINDS:
        problems.append(("kind", f"one of {', '.join(EVENT_KINDS)}"))
    after = query_integer(request, "after", 0, 0, 2**63 - 1, problems)
    limit = query_integer(request, "limit", 100, 1, 1000, problems)
    if problems:
        raise InputError(problems, status=400)
    # A token limited to tenants sees the events of their messages only (no MO).
    who = caller(request)
    tenants = who.tenants
    tenant = request.query.get("tenant_id")
    if tenant is not None:
        who.check(tenant)
        tenants = frozenset({tenant})
    events = await _view(request).events(kind, after, limit, tenants)
    return web.json_response({"events": events})


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


async def post_reload(request: web.Request) -> web.Response:
    # An invalid config raises InputError (422, the problems by key); nothing changes.
    return web.json_response(await _view(request).reload())


async def put_log_level(request: web.Request) -> web.Response:
    body = await read_json(request)
    level = body.get("level") if isinstance(body, dict) else None
    if not isinstance(level, str) or level.upper() not in LOG_LEVELS:
        raise InputError([("level", f"one of {', '.join(LOG_LEVELS)}")])
    return web.json_response(_view(request).set_log_level(level.upper()))


# --------------------------------------------------------------------------- bind management



Action = Literal["pause", "resume", "rebind", "reload_credentials"]


def operator_action(action: Action) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        status = await _view(request).operator_action(request.match_info["id"], action)
        if status is None:
            raise _not_found(f"operator {request.match_info['id']!r}")
        return web.json_response(status)

    handle.__name__ = f"post_operator_{action}"
    return handle


async def patch_operator(request: web.Request) -> web.Response:
    patch = parse(OperatorPatch, await read_object(request))
    if patch.tps is None and patch.window is None:
        raise InputError([("body", "give tps, window or both")])
    status = _view(request).patch_operator(request.match_info["id"], patch.tps, patch.window)
    if status is None:
        raise _not_found(f"operator {request.match_info['id']!r}")
    return web.json_response(status)


async def get_bind(request: web.Request) -> web.Response:
    status = _view(request).bind_status(request.match_info["id"], request.match_info["bind"])
    if status is None:
        raise _not_found(f"bind {request.match_info['bind']!r} of operator "
                         f"{request.match_info['id']!r}")
    return web.json_response(status)


# --------------------------------------------------------------------------- routing, leases





async def post_select(request: web.Request) -> web.Response:
    raw = await read_object(request)
    caller(request).check(raw.get("tenant_id"))
    body = parse(SelectIn, raw)
    req = SelectRequest(body.destination.lstrip("+"), body.tenant_id, body.source,
                        body.message_type)
    try:
        decision = await _plane(request).select(req)
    except (Unavailable, InputError):
        raise
    except Exception as exc:
        raise Unavailable(f"routing data unavailable ({type(exc).__name__})") from None
    return web.json_response({**decision.to_dict(), "dry_run": True})


async def post_validate(request: web.Request) -> web.Response:
    raw = await read_object(request)
    caller(request).check(raw.get("tenant_id"))
    body = parse(ValidateIn, raw)
    result = await _plane(request).validate(body.sender, body.tenant_id)
    status = 503 if result.reason_code is Reason.UNAVAILABLE else 200
    return web.json_response(result.to_dict(), status=status)


async def post_invalidate(request: web.Request) -> web.Response:
    body = parse(InvalidateIn, await read_object(request))
    if not (body.senders or body.all or body.routing):
        raise InputError([("body", "name senders, or set all or routing")])
    try:
        done = await _plane(request).invalidate(body.senders, body.all, body.routing)
    except Unavailable:
        raise
    except Exception as exc:
        raise Unavailable(f"cache unavailable ({type(exc).__name__})") from None
    return web.json_response({"invalidated": done})


# --------------------------------------------------------------------------- admin CRUD


def _int_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise _not_found(f"rule {raw!r}")
    return int(raw)


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "1000")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 5 and 1 <= int(raw) <= 10_000):
        raise InputError([("limit", "an integer between 1 and 10000")], status=400)
    return int(raw)


async def _admin(call: Awaitable[Any]) -> Any:
    try:
        return await call
    except UnknownOperator as exc:  # 409: valid input, but not with today's operators
        raise InputError([("operator_id", str(exc))], status=409,
                         title="Unknown operator") from None


async def list_rules(request: web.Request) -> web.Response:
    rules = await _plane(request).data.list_rules()
    return web.json_response({"rules": [r.to_dict() for r in rules]})


async def create_rule(request: web.Request) -> web.Response:
    rule = parse(RuleIn, await read_object(request))
    row = await _admin(_plane(request).put_rule(rule))
    return web.json_response(row.to_dict(), status=201)


async def get_rule(request: web.Request) -> web.Response:
    row = await _plane(request).data.get_rule(_int_id(request))
    if row is None:
        raise _not_found(f"rule {request.match_info['id']!r}")
    return web.json_response(row.to_dict())


async def put_rule(request: web.Request) -> web.Response:
    rule_id = _int_id(request)
    rule = parse(RuleIn, await read_object(request))
    row = await _admin(_plane(request).put_rule(rule, rule_id))
    if row is None:
        raise _not_found(f"rule {rule_id}")
    return web.json_response(row.to_dict())


async def delete_rule(request: web.Request) -> web.Response:
    row = await _plane(request).delete_rule(_int_id(request))
    if row is None:
        raise _not_found(f"rule {request.match_info['id']!r}")
    return web.json_response(row.to_dict())


async def list_prefixes(request: web.Request) -> web.Response:
    starts = request.query.get("starts_with", "")
    if starts and not (starts.isascii() and starts.isdigit() and len(starts) <= 15):
        raise InputError([("starts_with", "up to 15 digits")], status=400)
    rows = await _plane(request).data.list_prefixes(starts, _limit(request))
    return web.json_response({"prefixes": [asdict(r) for r in rows]})


async def put_prefix(request: web.Request) -> web.Response:
    prefix = parse(PrefixIn, await read_object(request))
    row = await _admin(_plane(request).put_prefix(prefix))
    return web.json_response(asdict(row))


async def delete_prefix(request: web.Request) -> web.Response:
    prefix = request.match_info["prefix"]
    if not await _plane(request).delete_prefix(prefix):
        raise _not_found(f"prefix {prefix!r}")
    return web.json_response({"deleted": prefix})


async def list_leases(request: web.Request) -> web.Response:
    tenant = request.query.get("tenant_id")
    rows = await _plane(request).data.list_leases(tenant, _limit(request))
    return web.json_response({"leases": [r.to_dict() for r in rows]})


async def put_lease(request: web.Request) -> web.Response:
    lease = parse(LeaseIn, await read_object(request))
    row = await _plane(request).put_lease(lease)
    return web.json_response(row.to_dict())


async def get_lease(request: web.Request) -> web.Response:
    row = await _plane(request).data.lease(request.match_info["sender"])
    if row is None:
        raise _not_found("such lease")
    return web.json_response(row.to_dict())


async def delete_lease(request: web.Request) -> web.Response:
    sender = request.match_info["sender"]
    if not await _plane(request).delete_lease(sender):
        raise _not_found("such lease")
    return web.json_response({"deleted": sender})


# --------------------------------------------------------------------------- webhooks


async def list_dead_webhooks(request: web.Request) -> web.Response:
    problems: list[tuple[str, str]] = []
    after = query_integer(request, "after", 0, 0, 2**63 - 1, problems)
    limit = query_integer(request, "limit", 100, 1, 1000, problems)
    tenant = request.query.get("tenant_id")
    if tenant is not None and not TENANT_ID.fullmatch(tenant):
        problems.append(("tenant_id", "1 to 64 characters of A-Z a-z 0-9 . _ -"))
    if problems:
        raise InputError(problems, status=400)
    tenants = None if tenant is None else frozenset({tenant})
    dead = await _view(request).webhook_dead(after, limit, tenants)
    return web.json_response({"dead": dead})


async def replay_dead_webhook(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18) or \
            not await _view(request).webhook_replay(int(raw)):
        raise _not_found(f"dead webhook delivery {raw!r}")
    return web.json_response({"replayed": int(raw)})


# --------------------------------------------------------------------------- status page

# The page and its assets are package data (control/static/), read once: no CDN, no
# build step. The page is public; its data (GET /v1/status) needs the read role.
ASSETS = {"/": ("status.html", "text/html"), "/status": ("status.html", "text/html"),
          "/status/status.css": ("status.css", "text/css"),
          "/status/status.js": ("status.js", "text/javascript")}
PAGE_HEADERS = {
    # Only the daemon's own script and style; nothing framed, nothing sent elsewhere.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_asset_cache: dict[str, bytes] = {}


def _asset(name: str) -> bytes:
    if name not in _asset_cache:
        from importlib.resources import files

        _asset_cache[name] = (files("control") / "static" / name).read_bytes()
    return _asset_cache[name]


async def status_asset(request: web.Request) -> web.Response:
    resource = request.match_info.route.resource
    name, content_type = ASSETS[resource.canonical if resource is not None else "/"]
    return web.Response(body=_asset(name), content_type=content_type, charset="utf-8",
                        headers=PAGE_HEADERS)


async def get_status(request: web.Request) -> web.Response:
    snapshot = _view(request).status_snapshot()
    who = caller(request)
    # What the page may offer: pause, resume and rebind need the operate role.
    snapshot["you"] = {"name": who.name, "operate": who.has("operate")}
    return web.json_response(snapshot, headers={"Cache-Control": "no-store"})


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[DOCUMENT])
