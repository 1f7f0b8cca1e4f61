"""The three ways a request to the fault proxy can be wrong, as Toxiproxy answers them."""

from __future__ import annotations


class FieldError(ValueError):
    """Bad input (HTTP 400); ``field`` names what to fix, e.g. ``attributes.latency``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(LookupError):
    """No proxy or toxic by that name (HTTP 404)."""


class Conflict(Exception):
    """A proxy or toxic by that name already exists (HTTP 409)."""
