"""The outbound message model: validation of what callers send, and addressing.

A message comes in as JSON (HTTP API or a NATS dispatch command), is validated once
here with errors that name the field, and leaves as an ``Outbound`` carrying the
encoded payload and the SMPP addressing derived from the address forms.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from correlation.store import MessageContent
from smppd.config.fields import CallbackUrl
from smppd.protocol.constants import Npi, Ton
from smppd.protocol.encoding import EncodingError, choose_coding, encode_text

E164 = re.compile(r"^\+?[1-9][0-9]{6,14}$")
SHORT_CODE = re.compile(r"^[0-9]{3,8}$")
ALPHANUMERIC = re.compile(r"^[A-Za-z0-9 ._&'\-]{1,11}$")
MESSAGE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
TENANT_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
MAX_PAYLOAD = 255 * 140  # the most a UDH split can carry


class MessageError(ValueError):
    """A message that cannot be accepted; ``problems`` lists (field, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = problems


def _matching(pattern: re.Pattern[str], allowed: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(allowed)
        return value

    return AfterValidator(check)


MessageId = Annotated[str, _matching(MESSAGE_ID, "1 to 64 characters of A-Z a-z 0-9 . _ : -")]
TenantId = Annotated[str, _matching(TENANT_ID, "1 to 64 characters of A-Z a-z 0-9 . _ -")]


class MessageIn(BaseModel):
    """The body of POST /v1/messages and of a dispatch command."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    message_id: MessageId | None = Field(default=None, description="given or generated (UUID)")
    tenant_id: TenantId
    source: str
    destination: str
    text: str | None = None
    data: str | None = Field(default=None, description="base64 bytes, with data_coding")
    data_coding: int | None = Field(default=None, ge=0, le=255)
    operator_id: str | None = None
    registered_delivery: bool = True
    validity: int | None = Field(default=None, ge=60, le=7 * 24 * 3600,
                                 description="seconds the SMSC may keep trying")
    priority: int = Field(default=0, ge=0, le=3)
    callback_url: CallbackUrl | None = Field(
        default=None, description="http(s) URL its DLR events are POSTed to (smppd.webhooks)")

    @field_validator("destination")
    @classmethod
    def _destination(cls, value: str) -> str:
        if not E164.match(value):
            raise ValueError("must be an E.164 number: optional +, 7 to 15 digits, no leading 0")
        return value.lstrip("+")

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        address_form(value)  # raises ValueError naming the accepted forms
        return value

    @model_validator(mode="after")
    def _body(self) -> MessageIn:
        if (self.text is None) == (self.data is None):
            raise ValueError("exactly one of text or data is required")
        if self.data is not None and self.data_coding is None:
            raise ValueError("data needs data_coding")
        return self


AddressForm = Literal["e164", "short_code", "alphanumeric"]


def address_form(address: str) -> AddressForm:
    if E164.match(address) and len(address.lstrip("+")) > 8:
        return "e164"
    if SHORT_CODE.match(address):
        return "short_code"
    if ALPHANUMERIC.match(address) and not address.isdigit():
        return "alphanumeric"
    raise ValueError("must be an E.164 number, a short code (3-8 digits) "
                     "or alphanumeric (at most 11 characters)")


def ton_npi(address: str) -> tuple[str, int, int]:
    """(address as sent, TON, NPI) derived from the address form."""
    form = address_form(address)
    if form == "e164":
        return address.lstrip("+"), Ton.INTERNATIONAL, Npi.ISDN
    if form == "short_code":
        return address, Ton.NETWORK_SPECIFIC, Npi.UNKNOWN
    return address, Ton.ALPHANUMERIC, Npi.UNKNOWN


@dataclass(slots=True, kw_only=True)
class Outbound(MessageContent):
    """A validated message, its payload encoded, ready to be stored and split."""

    operator_id: str | None
    registered_delivery: bool
    validity: int | None
    priority: int
    callback_url: str | None = None


def validate_message(raw: Any) -> Outbound:
    """Validate one message body; raises MessageError naming each bad field."""
    try:
        msg = MessageIn.model_validate(raw)
    except ValidationError as exc:
        raise MessageError(problems_of(exc)) from None
    if msg.text is not None:
        coding = choose_coding(msg.text) if msg.data_coding is None else msg.data_coding
        try:
            body = encode_text(msg.text, coding)
        except EncodingError as exc:
            raise MessageError([("text", str(exc))]) from None
    else:
        assert msg.data is not None and msg.data_coding is not None
        try:
            body = base64.b64decode(msg.data, validate=True)
        except (binascii.Error, ValueError):
            raise MessageError([("data", "not valid base64")]) from None
        coding = msg.data_coding
    if not body:
        raise MessageError([("text" if msg.text is not None else "data", "must not be empty")])
    if len(body) > MAX_PAYLOAD:
        raise MessageError([("text" if msg.text is not None else "data",
                             f"{len(body)} octets encoded, at most {MAX_PAYLOAD}")])
    return Outbound(
        message_id=msg.message_id or str(uuid.uuid4()),
        tenant_id=msg.tenant_id,
        source=msg.source,
        destination=msg.destination,
        data_coding=coding,
        body=body,
        operator_id=msg.operator_id,
        registered_delivery=msg.registered_delivery,
        validity=msg.validity,
        priority=msg.priority,
        callback_url=msg.callback_url,
    )


def problems_of(exc: ValidationError) -> list[tuple[str, str]]:
    """pydantic errors as (dotted field, message) pairs; never echoes the input value."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "body"
        message = error["msg"].removeprefix("Value error, ")
        problems.append((field, message))
    return problems


def relative_validity(seconds: int) -> str:
    """SMPP relative time format YYMMDDhhmmss000R for a validity period."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"0000{days:02d}{hours:02d}{minutes:02d}{secs:02d}000R"


