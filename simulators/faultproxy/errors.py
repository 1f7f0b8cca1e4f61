"""The three ways a request to the fault proxy can be wrong, as Toxiproxy answers them."""

from __future__ import annotations

from ..errors import NamedValueError


class FieldError(NamedValueError):
    """Bad input (HTTP 400); ``field`` names what to fix, e.g. ``attributes.latency``."""

    @property
    def field(self) -> str:
        return self.name


class NotFound(LookupError):
    """No proxy or toxic by that name (HTTP 404)."""


class Conflict(Exception):
    """A proxy or toxic by that name already exists (HTTP 409)."""
