"""The control API's HTTP server: aiohttp's runner and site in the daemon's loop,
HTTPS (mutual TLS with ``tls_client_ca``) when ``[api]`` has the keys.

Made before the daemon starts (the webhook guard asks which port is ours), serving
once ``start`` is given the view (``smppd.runtime.api_view``).
"""

from __future__ import annotations

import logging

from aiohttp import web

from control.view import GatewayView
from smppd.config import Config

log = logging.getLogger("smppd.daemon")  # its records keep the name they had


class ApiServer:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.runner: web.AppRunner | None = None
        self.port: int | None = None  # the bound port (listen may say 0)

    async def start(self, view: GatewayView) -> None:
        from control.access import make_runner
        from control.app import create_app
        from smppd.runtime.control_wiring import authenticator

        api = self.config.api
        app = create_app(view, authenticator(self.config), api.metrics_public)
        self.runner = make_runner(app, api.access_log)
        await self.runner.setup()
        host, port = api.listen
        context = api.ssl_context()  # HTTPS, mutual TLS with tls_client_ca
        site = web.TCPSite(self.runner, host, port, ssl_context=context)
        await site.start()
        sockets = getattr(site._server, "sockets", None)
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("api listening", extra={
            "event": "api_listening", "port": self.port, "tls": context is not None,
            "client_certificates": api.tls_client_ca is not None})

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
