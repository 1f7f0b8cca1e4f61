"""Toxiproxy's HTTP API over a ``Registry``: the same paths, JSON bodies and status
codes (201 on create, 204 on delete and reset, 404, 409, 400 with
``{"error": ..., "status": ...}``), so Toxiproxy clients drive it unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .errors import Conflict, FieldError, NotFound
from .registry import Registry

VERSION = "smppd-faultproxy 0.1.0 (Toxiproxy API 2)"

REGISTRY = web.AppKey("registry", Registry)
routes = web.RouteTableDef()


def _json(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _error(message: str, status: int) -> web.Response:
    return _json({"error": message, "status": status}, status)


async def _body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read() or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise FieldError("body", f"bad request body: {exc}") from None


@web.middleware
async def errors(request: web.Request,
                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> web.StreamResponse:
    # A web page could otherwise drive a proxy on localhost (Toxiproxy refuses too).
    if request.headers.get("User-Agent", "").startswith("Mozilla/"):
        return _error("User agent not allowed", 403)
    try:
        return await handler(request)
    except FieldError as exc:
        return _error(str(exc), 400)
    except NotFound as exc:
        return _error(str(exc), 404)
    except Conflict as exc:
        return _error(str(exc), 409)


def _registry(request: web.Request) -> Registry:
    return request.app[REGISTRY]


@routes.get("/version")
async def version(request: web.Request) -> web.Response:
    return _json({"version": VERSION})


@routes.post("/reset")
async def reset(request: web.Request) -> web.Response:
    await _registry(request).reset()
    return web.Response(status=204)


@routes.get("/proxies")
async def list_proxies(request: web.Request) -> web.Response:
    return _json({name: p.to_json() for name, p in _registry(request).proxies.items()})


@routes.post("/proxies")
async def create_proxy(request: web.Request) -> web.Response:
    proxy = await _registry(request).create(await _body(request))
    return _json(proxy.to_json(), 201)


@routes.post("/populate")
async def populate(request: web.Request) -> web.Response:
    proxies = await _registry(request).populate(await _body(request))
    return _json({"proxies": [p.to_json() for p in proxies]}, 201)


@routes.get("/proxies/{proxy}")
async def show_proxy(request: web.Request) -> web.Response:
    return _json(_registry(request).get(request.match_info["proxy"]).to_json())


@routes.post("/proxies/{proxy}")
@routes.patch("/proxies/{proxy}")
async def update_proxy(request: web.Request) -> web.Response:
    proxy = _registry(request).get(request.match_info["proxy"])
    body = await _body(request)
    if not isinstance(body, dict):
        raise FieldError("body", "must be a JSON object")
    for key in body:
        if key not in ("name", "listen", "upstream", "enabled", "toxics"):
            raise FieldError(key, "unknown field, expected one of listen, upstream, enabled")
    if body.get("name", proxy.name) != proxy.name:
        raise FieldError("name", "cannot change; delete the proxy and create a new one")
    await proxy.update({k: v for k, v in body.items() if k in ("listen", "upstream", "enabled")})
    return _json(proxy.to_json())


@routes.delete("/proxies/{proxy}")
async def delete_proxy(request: web.Request) -> web.Response:
    await _registry(request).remove(request.match_info["proxy"])
    return web.Response(status=204)


@routes.get("/proxies/{proxy}/toxics")
async def list_toxics(request: web.Request) -> web.Response:
    proxy = _registry(request).get(request.match_info["proxy"])
    return _json([t.to_json() for t in proxy.toxics.values()])


@routes.post("/proxies/{proxy}/toxics")
async def create_toxic(request: web.Request) -> web.Response:
    proxy = _registry(request).get(request.match_info["proxy"])
    return _json(proxy.add_toxic(await _body(request)).to_json())


@routes.get("/proxies/{proxy}/toxics/{toxic}")
async def show_toxic(request: web.Request) -> web.Response:
    proxy = _registry(request).get(request.match_info["proxy"])
    return _json(proxy.toxic(request.match_info["toxic"]).to_json())


@routes.post("/proxies/{proxy}/toxics/{toxic}")
@routes.patch("/proxies/{proxy}/toxics/{toxic}")
async def update_toxic(request: web.Request) -> web.Response:
    proxy = _registry(request).get(request.match_info["proxy"])
    body = await _body(request)
    return _json(proxy.update_toxic(request.match_info["toxic"], body).to_json())


@routes.delete("/proxies/{proxy}/toxics/{toxic}")
async def delete_toxic(request: web.Request) -> web.Response:
    proxy = _registry(request).get(request.match_info["proxy"])
    proxy.remove_toxic(request.match_info["toxic"])
    return web.Response(status=204)


def make_app(registry: Registry) -> web.Application:
    app = web.Application(middlewares=[errors])
    app[REGISTRY] = registry
    app.add_routes(routes)

    async def close_proxies(app: web.Application) -> None:
        await registry.close()

    app.on_cleanup.append(close_proxies)
    return app


class FaultProxy:
    """The API server and its proxies in the caller's event loop.

        fp = FaultProxy()
        await fp.start("127.0.0.1", 0)   # fp.port: the API's real port
        ...
        await fp.stop()                  # every proxy stopped, every connection closed
    """

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or Registry()
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(make_app(self.registry), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except BaseException:
            await self.stop()
            raise
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
