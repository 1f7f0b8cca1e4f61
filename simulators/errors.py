"""The base of the simulators' errors that name the bad value they are about."""

from __future__ import annotations


class NamedValueError(ValueError):
    """A bad value: ``name`` says where it is (a config key, a request field), ``message``
    what is wrong with it; the text is "name: message"."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message
