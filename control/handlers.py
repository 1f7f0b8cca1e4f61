"""Control-plane endpoints: bind management, SelectOperator, ValidateLease, cache
invalidation and admin CRUD for rules, prefixes and leases.

``ROUTES`` is the one list of (method, path, handler, roles) these come from: the
app registers it, the auth middleware reads the roles from it, and the OpenAPI test
checks the document against it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from control.auth import Authenticator, AuthError
from control.data import LeaseIn, PrefixIn, RuleIn
from control.leases import Reason
from control.plane import ControlPlane, UnknownOperator
from control.routing import SelectRequest
from control.view import ANYONE, Caller, GatewayView, InputError, Unavailable

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TENANT_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")
CALLER: web.RequestKey[Caller] = web.RequestKey("caller", Caller)
READ = ("read",)
OPERATE = ("operate",)
ADMIN = ("admin",)


def caller(request: web.Request) -> Caller:
    """Who calls (set by the auth middleware; anyone when the API is open)."""
    found: Caller = request.get(CALLER, ANYONE)
    return found


def _view(request: web.Request) -> GatewayView:
    from control.app import VIEW

    return request.app[VIEW]


def _plane(request: web.Request) -> ControlPlane:
    plane = _view(request).control
    if plane is None:
        raise Unavailable("the control plane (routing, leases) is not running")
    return plane


def _not_found(what: str) -> web.HTTPNotFound:
    return web.HTTPNotFound(text=f"no {what}")


async def _body(request: web.Request) -> dict[str, Any]:
    from control.app import read_json

    body = await read_json(request)
    if not isinstance(body, dict):
        raise InputError([("body", "must be a JSON object")])
    return body


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
    try:
        return model.model_validate(_integral(body))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "body"
            problems.append((field, str(err["msg"]).removeprefix("Value error, ")))
        raise InputError(problems) from None


# --------------------------------------------------------------------------- bind management


class OperatorPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    # At least one message in 1,000 s: a smaller rate overflows the bucket's pacing.
    tps: float | None = Field(default=None, ge=0.001, le=100_000)
    window: int | None = Field(default=None, ge=1, le=10_000)


def _operator_action(action: Literal["pause", "resume", "rebind", "reload_credentials"],
                     ) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        status = await _view(request).operator_action(request.match_info["id"], action)
        if status is None:
            raise _not_found(f"operator {request.match_info['id']!r}")
        return web.json_response(status)

    handle.__name__ = f"post_operator_{action}"
    return handle


async def patch_operator(request: web.Request) -> web.Response:
    patch = parse(OperatorPatch, await _body(request))
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


class SelectIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)

    destination: str = Field(pattern=r"^\+?[1-9][0-9]{6,14}$")
    tenant_id: str = Field(pattern=r"^[A-Za-z0-9._\-]{1,64}$")
    source: str | None = Field(default=None, min_length=1, max_length=20)
    message_type: Literal["transactional", "promotional", "otp", "service"] | None = None


class ValidateIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)

    sender: str = Field(min_length=1, max_length=20)
    tenant_id: str = Field(pattern=r"^[A-Za-z0-9._\-]{1,64}$")


class InvalidateIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    senders: list[str] = Field(default_factory=list, max_length=10_000)
    all: bool = False
    routing: bool = False


async def post_select(request: web.Request) -> web.Response:
    raw = await _body(request)
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
    raw = await _body(request)
    caller(request).check(raw.get("tenant_id"))
    body = parse(ValidateIn, raw)
    result = await _plane(request).validate(body.sender, body.tenant_id)
    status = 503 if result.reason_code is Reason.UNAVAILABLE else 200
    return web.json_response(result.to_dict(), status=status)


async def post_invalidate(request: web.Request) -> web.Response:
    body = parse(InvalidateIn, await _body(request))
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
    rule = parse(RuleIn, await _body(request))
    row = await _admin(_plane(request).put_rule(rule))
    return web.json_response(row.to_dict(), status=201)


async def get_rule(request: web.Request) -> web.Response:
    row = await _plane(request).data.get_rule(_int_id(request))
    if row is None:
        raise _not_found(f"rule {request.match_info['id']!r}")
    return web.json_response(row.to_dict())


async def put_rule(request: web.Request) -> web.Response:
    rule_id = _int_id(request)
    rule = parse(RuleIn, await _body(request))
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
    prefix = parse(PrefixIn, await _body(request))
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
    lease = parse(LeaseIn, await _body(request))
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


# --------------------------------------------------------------------------- webhooks


async def list_dead_webhooks(request: web.Request) -> web.Response:
    from control.app import _integer

    problems: list[tuple[str, str]] = []
    after = _integer(request, "after", 0, 0, 2**63 - 1, problems)
    limit = _integer(request, "limit", 100, 1, 1000, problems)
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


async def get_openapi(request: web.Request) -> web.Response:
    from control.openapi import document

    return web.json_response(document())


OPEN: tuple[str, ...] = ()
ROUTES: list[tuple[str, str, Handler, tuple[str, ...]]] = [
    ("GET", "/v1/openapi.json", get_openapi, OPEN),
    ("GET", "/", status_asset, OPEN),
    ("GET", "/status", status_asset, OPEN),
    ("GET", "/status/status.css", status_asset, OPEN),
    ("GET", "/status/status.js", status_asset, OPEN),
    ("GET", "/v1/status", get_status, READ),
    ("POST", "/v1/operators/{id}/pause", _operator_action("pause"), OPERATE),
    ("POST", "/v1/operators/{id}/resume", _operator_action("resume"), OPERATE),
    ("POST", "/v1/operators/{id}/rebind", _operator_action("rebind"), OPERATE),
    ("POST", "/v1/operators/{id}/credentials/reload", _operator_action("reload_credentials"),
     OPERATE),
    ("PATCH", "/v1/operators/{id}", patch_operator, OPERATE),
    ("GET", "/v1/operators/{id}/binds/{bind}", get_bind, READ),
    ("POST", "/v1/routing/select", post_select, ("read", "submit")),
    ("POST", "/v1/leases/validate", post_validate, ("read", "submit")),
    ("POST", "/v1/cache/invalidate", post_invalidate, OPERATE),
    ("GET", "/v1/admin/rules", list_rules, ADMIN),
    ("POST", "/v1/admin/rules", create_rule, ADMIN),
    ("GET", "/v1/admin/rules/{id}", get_rule, ADMIN),
    ("PUT", "/v1/admin/rules/{id}", put_rule, ADMIN),
    ("DELETE", "/v1/admin/rules/{id}", delete_rule, ADMIN),
    ("GET", "/v1/admin/prefixes", list_prefixes, ADMIN),
    ("POST", "/v1/admin/prefixes", put_prefix, ADMIN),
    ("DELETE", "/v1/admin/prefixes/{prefix}", delete_prefix, ADMIN),
    ("GET", "/v1/admin/leases", list_leases, ADMIN),
    ("POST", "/v1/admin/leases", put_lease, ADMIN),
    ("GET", "/v1/admin/leases/{sender}", get_lease, ADMIN),
    ("DELETE", "/v1/admin/leases/{sender}", delete_lease, ADMIN),
    ("GET", "/v1/webhooks/dead", list_dead_webhooks, OPERATE),
    ("POST", "/v1/webhooks/dead/{id}/replay", replay_dead_webhook, OPERATE),
]

# Roles of the routes app.py registers itself; a route in neither table needs `read`
# for GET and `admin` for anything else (see auth_middleware).
BASE_ROLES: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
    ("GET", "/v1/operators"): READ,
    ("GET", "/v1/operators/{id}"): READ,
    ("POST", "/v1/messages"): ("submit",),
    ("POST", "/v1/messages/bulk"): ("submit",),
    ("GET", "/v1/messages/{id}"): ("read", "submit"),
    ("GET", "/v1/events"): READ,
    ("POST", "/v1/admin/reload"): ADMIN,
    ("PUT", "/v1/admin/log-level"): ADMIN,
}


def roles_for(method: str, path: str, metrics_public: bool) -> tuple[str, ...]:
    if path == "/metrics":
        return OPEN if metrics_public else READ
    for m, p, _, roles in ROUTES:
        if m == method and p == path:
            return roles
    found = BASE_ROLES.get(("GET" if method == "HEAD" else method, path))
    if found is not None:
        return found
    return READ if method in ("GET", "HEAD") else ADMIN


def auth_middleware(auth: Authenticator, metrics_public: bool) -> Any:
    """401/403 problems for callers without the route's role; open routes pass."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        resource = request.match_info.route.resource
        if auth.enabled and resource is not None:
            roles = roles_for(request.method, resource.canonical, metrics_public)
            if roles:
                try:
                    principal = auth.authorize(request.headers.get("Authorization"), roles)
                    if principal is not None:
                        request[CALLER] = Caller(principal.name, principal.tenants,
                                                 principal.roles)
                except AuthError as exc:
                    from control.app import problem

                    response = problem(exc.status, "Unauthorized" if exc.status == 401
                                       else "Forbidden", exc.detail)
                    if exc.status == 401:
                        response.headers["WWW-Authenticate"] = 'Bearer realm="smppd"'
                    return response
        return await handler(request)  # type: ignore[no-any-return]

    return middleware


def add_routes(app: web.Application) -> None:
    for method, path, handler, _ in ROUTES:
        app.router.add_route(method, path, handler)
