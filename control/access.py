"""The API's access log (``[api] access_log = true``): one line per request, as a
structured record like every other log line (event ``http_access``).

The message is ``METHOD PATH STATUS`` (the query string left out, so nothing a caller
put there is logged); the fields are the route's template, the status, the time taken,
the response size, the peer and the token's configured name (never the token).
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

LOGGER = "smppd.access"


class AccessLog(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        from control.problems import CALLER

        route = None
        caller = None
        if isinstance(request, web.Request):
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else None
            found = request.get(CALLER)
            caller = found.name if found is not None else None
        # Formatted here, not by logging, so the daemon's filter masks MSISDNs in the path.
        line = f"{request.method} {request.path} {response.status}"
        self.logger.info(line, extra={
            "event": "http_access", "method": request.method, "route": route,
            "status": response.status, "duration_ms": round(time * 1000, 2),
            "bytes": response.body_length, "remote": request.remote, "caller": caller})


def make_runner(app: web.Application, enabled: bool) -> web.AppRunner:
    """The app's runner, with the access log on or off."""
    if not enabled:
        return web.AppRunner(app, access_log=None)
    return web.AppRunner(app, access_log_class=AccessLog, access_log=logging.getLogger(LOGGER))
