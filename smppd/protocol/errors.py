"""Typed errors of the PDU codec: each carries what the session needs to answer."""

from __future__ import annotations

from .constants import Status


class SmppError(Exception):
    """Base of every error the protocol layer raises."""


class PduDecodeError(SmppError):
    """A PDU could not be decoded.

    ``command_status`` is the status to answer with in a generic_nack (or the
    request's own response); ``consumed`` is how many bytes to skip to reach the
    next PDU. ``fatal`` means the stream cannot be trusted any more: answer, then
    close the connection and rebind.
    """

    fatal = False

    def __init__(
        self,
        message: str,
        *,
        command_status: int,
        consumed: int,
        command_id: int | None = None,
        sequence_number: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.command_status = command_status
        self.consumed = consumed
        self.command_id = command_id
        self.sequence_number = sequence_number
        self.field = field


class InvalidCommandLengthError(PduDecodeError):
    """command_length below the header size or above the cap: the framing is lost."""

    fatal = True

    def __init__(self, command_length: int, limit: int) -> None:
        super().__init__(
            f"command_length {command_length} outside 16..{limit}",
            command_status=Status.ESME_RINVCMDLEN,
            consumed=0,
        )
        self.command_length = command_length


class UnknownCommandError(PduDecodeError):
    """A well-framed PDU whose command_id we do not know."""

    def __init__(self, command_id: int, sequence_number: int, consumed: int) -> None:
        super().__init__(
            f"unknown command_id 0x{command_id:08X}",
            command_status=Status.ESME_RINVCMDID,
            consumed=consumed,
            command_id=command_id,
            sequence_number=sequence_number,
        )


class MalformedPduError(PduDecodeError):
    """A well-framed PDU whose body does not parse (field, length or TLV problem)."""


class PduEncodeError(SmppError, ValueError):
    """A PDU object holds a value that cannot go on the wire; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
