"""Configuration errors: each problem under the dotted key it concerns."""

from __future__ import annotations

from pathlib import Path


class ConfigError(Exception):
    """One or more configuration problems, each as (dotted key, message).

    `key` is the first problem's key ("" for file-level problems). str() lists every
    problem on its own line as `FILE: key: message`.
    """

    def __init__(self, file: str | Path, problems: list[tuple[str, str]]) -> None:
        self.file = str(file)
        self.problems = problems
        self.key = problems[0][0] if problems else ""
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = []
        for key, message in self.problems:
            lines.append(f"{self.file}: {key}: {message}" if key else f"{self.file}: {message}")
        return "\n".join(lines)


class ConfigFileError(ConfigError):
    """The file is missing or unreadable (as opposed to invalid)."""


class Problems(ValueError):
    """Raised by model validators: problems keyed by the fields involved.

    Each entry is (fields, message); the first field an operator set explicitly
    names the problem (see `smppd.config.loading`). Pydantic keeps the exception object in
    the error's ctx, so `load_config` can unpack it.
    """

    def __init__(self, problems: list[tuple[tuple[str, ...], str]]) -> None:
        super().__init__("; ".join(f"{f[0]}: {m}" for f, m in problems))
        self.problems = problems
