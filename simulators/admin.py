"""The simulator's admin HTTP API (aiohttp): inspect and steer each simulated MNO.

Errors are JSON ``{"error": "...", "field": "..."}`` naming the bad field.
Passwords are never returned.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NoReturn

from aiohttp import web

from .config import ConfigError, parse_behaviour, parse_passwords
from .mno import Mno, MoError

# The simulator's MNOs by name (SmscSimulator.mnos, filled before the API starts): the
# API steers the MNOs and needs nothing else of the simulator.
MNOS_KEY: web.AppKey[Mapping[str, Mno]] = web.AppKey("mnos")


def _fail(status: int, message: str, field: str | None = None) -> NoReturn:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    raise _http_error(status, body)


def _http_error(status: int, body: dict[str, Any]) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 404: web.HTTPNotFound, 409: web.HTTPConflict}[status]
    return cls(text=json.dumps(body), content_type="application/json")


def _mno(request: web.Request) -> Mno:
    name = request.match_info["name"]
    mno = request.app[MNOS_KEY].get(name)
    if mno is None:
        _fail(404, f"unknown MNO {name!r}", "name")
    return mno


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        _fail(400, "body is not valid JSON", "body")
    if not isinstance(body, dict):
        _fail(400, "body must be a JSON object", "body")
    return body


async def list_mnos(request: web.Request) -> web.Response:
    mnos = request.app[MNOS_KEY]
    return web.json_response({"mnos": [m.summary() for m in mnos.values()]})


async def get_counters(request: web.Request) -> web.Response:
    mno = _mno(request)
    return web.json_response({"name": mno.name, "bound": mno.bound_count,
                              **mno.counters.to_dict()})


async def get_pdus(request: web.Request) -> web.Response:
    mno = _mno(request)
    limit_raw = request.query.get("limit")
    limit = None
    if limit_raw is not None:
        if not limit_raw.isdigit():
            _fail(400, "limit must be a non-negative integer", "limit")
        limit = int(limit_raw)
    pdus = mno.recorder.entries(request.query.get("command"), limit)
    return web.json_response({"name": mno.name, "recording": mno.recorder.enabled, "pdus": pdus})


async def get_behaviour(request: web.Request) -> web.Response:
    return web.json_response(_mno(request).behaviour.to_dict())


async def put_behaviour(request: web.Request) -> web.Response:
    """PUT replaces the whole behaviour (unnamed keys back to defaults); PATCH merges."""
    mno = _mno(request)
    body = await _json_object(request)
    recording = body.pop("record", None)
    if recording is not None and not isinstance(recording, bool):
        _fail(400, "expected a boolean", "record")
    try:
        base = mno.behaviour if request.method == "PATCH" else None
        behaviour = parse_behaviour(body, "behaviour", base)
    except ConfigError as exc:
        _fail(400, exc.message, exc.key.removeprefix("behaviour."))
    mno.behaviour = behaviour
    if recording is not None:
        mno.recorder.enabled = recording
    return web.json_response(behaviour.to_dict())


async def post_mo(request: web.Request) -> web.Response:
    mno = _mno(request)
    body = await _json_object(request)
    known = {"source_addr", "destination_addr", "text", "hex", "data_coding", "system_id",
             "concat"}
    for key in body:
        if key not in known:
            _fail(400, "unknown field", key)
    for key in ("source_addr", "destination_addr"):
        if not isinstance(body.get(key), str) or not body[key]:
            _fail(400, "required, a non-empty string", key)
    text: str | bytes
    if "hex" in body:
        try:
            text = bytes.fromhex(body["hex"])
        except (TypeError, ValueError):
            _fail(400, "not a hex string", "hex")
    elif isinstance(body.get("text"), str):
        text = body["text"]
    else:
        _fail(400, "required: text (a string) or hex", "text")
    data_coding = body.get("data_coding")
    if data_coding is not None and (isinstance(data_coding, bool)
                                    or not isinstance(data_coding, int)
                                    or not 0 <= data_coding <= 255):
        _fail(400, "an integer 0..255", "data_coding")
    concat = body.get("concat", "udh")
    if concat not in ("udh", "sar", "payload"):
        _fail(400, "one of udh, sar, payload", "concat")
    system_id = body.get("system_id")
    if system_id is not None and not isinstance(system_id, str):
        _fail(400, "a string", "system_id")
    try:
        parts = mno.inject_mo(body["source_addr"], body["destination_addr"], text,
                              system_id=system_id, data_coding=data_coding, concat=concat)
    except MoError as exc:
        _fail(409 if exc.field == "system_id" and system_id is None else 400, str(exc),
              exc.field)
    return web.json_response({"parts": parts}, status=202)


async def put_password(request: web.Request) -> web.Response:
    mno = _mno(request)
    system_id = request.match_info["system_id"]
    if system_id not in mno.accounts:
        _fail(404, f"unknown system_id {system_id!r}", "system_id")
    body = await _json_object(request)
    try:
        passwords = parse_passwords(body, "body")
    except ConfigError as exc:
        _fail(400, exc.message, exc.key.removeprefix("body."))
    mno.set_passwords(system_id, passwords)
    return web.json_response({"system_id": system_id, "passwords": len(passwords)})


async def post_unbind_all(request: web.Request) -> web.Response:
    return web.json_response({"unbinding": _mno(request).unbind_all()})


async def post_reset(request: web.Request) -> web.Response:
    mno = _mno(request)
    mno.reset()
    return web.json_response({"reset": mno.name})


def make_app(mnos: Mapping[str, Mno]) -> web.Application:
    app = web.Application()
    app[MNOS_KEY] = mnos
    app.router.add_get("/mnos", list_mnos)
    app.router.add_get("/mnos/{name}/counters", get_counters)
    app.router.add_get("/mnos/{name}/pdus", get_pdus)
    app.router.add_get("/mnos/{name}/behaviour", get_behaviour)
    app.router.add_put("/mnos/{name}/behaviour", put_behaviour)
    app.router.add_patch("/mnos/{name}/behaviour", put_behaviour)
    app.router.add_post("/mnos/{name}/mo", post_mo)
    app.router.add_put("/mnos/{name}/accounts/{system_id}/password", put_password)
    app.router.add_post("/mnos/{name}/unbind-all", post_unbind_all)
    app.router.add_post("/mnos/{name}/reset", post_reset)
    return app
