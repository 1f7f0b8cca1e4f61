"""The control API v1 (aiohttp), served in the daemon's own event loop.

The routes, their roles and the OpenAPI document come from one table
(control/routes.py). Errors are RFC 9457 problem details naming the field
(control/problems.py).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from control.auth import Authenticator, AuthError
from control.openapi import document
from control.problems import (
    CALLER,
    DOCUMENT,
    MAX_BODY,
    MAX_REQUEST_LINE,
    VIEW,
    problem,
    problems_middleware,
)
from control.routes import add_routes, roles_for
from control.view import Caller, GatewayView


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
                    response = problem(exc.status, "Unauthorized" if exc.status == 401
                                       else "Forbidden", exc.detail)
                    if exc.status == 401:
                        response.headers["WWW-Authenticate"] = 'Bearer realm="smppd"'
                    return response
        return await handler(request)  # type: ignore[no-any-return]

    return middleware


def create_app(view: GatewayView, auth: Authenticator | None = None,
               metrics_public: bool = True) -> web.Application:
    """The app; ``auth`` None or without tokens leaves every endpoint open."""
    middlewares = [problems_middleware]
    if auth is not None and auth.enabled:
        middlewares.append(auth_middleware(auth, metrics_public))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY,
                          handler_args={"max_line_size": MAX_REQUEST_LINE})
    app[VIEW] = view
    app[DOCUMENT] = document()
    add_routes(app)
    return app
