"""The proxies by name: create, populate, reset, and stop them all."""

from __future__ import annotations

import random
from typing import Any

from .clock import Clock, MonotonicClock
from .errors import Conflict, FieldError, NotFound
from .proxy import Proxy

DEFAULT_LISTEN = "127.0.0.1:0"  # a free port on loopback, never every interface by default
PROXY_FIELDS = ("name", "listen", "upstream", "enabled")


def parse_proxy(body: object, where: str = "") -> dict[str, Any]:
    """A proxy's fields from JSON; ``where`` prefixes field names (``proxies[2].``)."""
    if not isinstance(body, dict):
        raise FieldError(where.rstrip(".") or "body", "must be a JSON object")
    for key in body:
        if key not in PROXY_FIELDS:
            raise FieldError(where + key,
                             f"unknown field, expected one of {', '.join(PROXY_FIELDS)}")
    name = body.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise FieldError(where + "name", "required, a non-empty string without '/'")
    if not isinstance(body.get("upstream"), str) or not body["upstream"]:
        raise FieldError(where + "upstream", "required, host:port")
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise FieldError(where + "enabled", "must be true or false")
    return {"name": name, "listen": body.get("listen") or DEFAULT_LISTEN,
            "upstream": body["upstream"], "enabled": enabled}


class Registry:
    def __init__(self, *, clock: Clock | None = None, rng: random.Random | None = None) -> None:
        self.clock: Clock = clock or MonotonicClock()
        self.rng = rng or random.Random()  # fault injection, not secrecy
        self.proxies: dict[str, Proxy] = {}

    def get(self, name: str) -> Proxy:
        try:
            return self.proxies[name]
        except KeyError:
            raise NotFound(f"proxy not found: {name}") from None

    def _new(self, fields: dict[str, Any], where: str = "") -> Proxy:
        try:
            return Proxy(fields["name"], fields["listen"], fields["upstream"],
                         clock=self.clock, rng=self.rng)
        except FieldError as exc:
            raise FieldError(where + exc.field, exc.message) from None

    async def create(self, body: object) -> Proxy:
        fields = parse_proxy(body)
        if fields["name"] in self.proxies:
            raise Conflict(f"proxy already exists: {fields['name']}")
        proxy = self._new(fields)
        if fields["enabled"]:
            await proxy.start()
        self.proxies[proxy.name] = proxy
        return proxy

    async def populate(self, body: object) -> list[Proxy]:
        """Create or replace each proxy listed; one whose listen and upstream are
        unchanged is kept with its toxics and connections. All are checked first."""
        if not isinstance(body, list):
            raise FieldError("body", "must be a JSON array of proxies")
        wanted = [parse_proxy(item, f"proxies[{i}].") for i, item in enumerate(body)]
        names = [fields["name"] for fields in wanted]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise FieldError(f"proxies[{i}].name", f"duplicate proxy name {name!r}")
        for i, fields in enumerate(wanted):
            self._new(fields, f"proxies[{i}].")  # addresses checked before any change
        result = []
        for fields in wanted:
            existing = self.proxies.get(fields["name"])
            if existing is not None and (existing.upstream != fields["upstream"]
                                         or fields["listen"] not in (existing.listen,
                                                                     DEFAULT_LISTEN)):
                await self.remove(existing.name)
                existing = None
            if existing is None:
                result.append(await self.create(fields))
            else:
                await existing.update({"enabled": fields["enabled"]})
                result.append(existing)
        return result

    async def remove(self, name: str) -> None:
        proxy = self.get(name)
        del self.proxies[name]
        await proxy.stop()

    async def reset(self) -> None:
        """Every proxy enabled, every toxic removed."""
        for proxy in self.proxies.values():
            proxy.remove_toxics()
            await proxy.start()

    async def close(self) -> None:
        for name in list(self.proxies):
            await self.remove(name)
