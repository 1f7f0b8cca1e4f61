from __future__ import annotations

import contextlib
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from correlation import receipts
from correlation.receipts import (
    TAG_MESSAGE_PAYLOAD,
    TAG_MESSAGE_STATE,
    TAG_NETWORK_ERROR_CODE,
    TAG_RECEIPTED_MESSAGE_ID,
    DlrStatus,
    Receipt,
    ReceiptError,
    format_receipt,
    parse_receipt,
    receipt_tlvs,
)

CANONICAL = (
    b"id:1234567890 sub:001 dlvrd:001 submit date:2301011200 done date:2301011201"
    b" stat:DELIVRD err:000 text:Hello from the sim"
)


def test_canonical_text_receipt() -> None:
    assert parse_receipt(CANONICAL, {}) == Receipt(
        message_id="1234567890",
        stat="DELIVRD",
        err="000",
        sub=1,
        dlvrd=1,
        submit_date=datetime(2023, 1, 1, 12, 0),
        done_date=datetime(2023, 1, 1, 12, 1),
        text="Hello from the sim",
    )


# Receipts as SMSCs send them: (short_message, id, stat, err, done_date, text).
REAL_WORLD = [
    pytest.param(
        b"id:3C0E1F27 sub:001 dlvrd:001 submit date:1807161522 done date:1807161522"
        b" stat:DELIVRD err:000 text:",
        "3C0E1F27",
        "DELIVRD",
        "000",
        datetime(2018, 7, 16, 15, 22),
        "",
        id="hex id, empty text",
    ),
    pytest.param(
        b"ID:0000123 SUB:001 DLVRD:000 SUBMIT DATE:2402291159 DONE DATE:240229120005"
        b" STAT:UNDELIV ERR:001 TEXT:Your code is 42",
        "0000123",
        "UNDELIV",
        "001",
        datetime(2024, 2, 29, 12, 0, 5),
        "Your code is 42",
        id="upper-case keys, seconds",
    ),
    pytest.param(
        b"  id : 77   stat : EXPIRED   err : 0   done date : 2312312359  ",
        "77",
        "EXPIRED",
        "0",
        datetime(2023, 12, 31, 23, 59),
        None,
        id="reordered, fields missing, spaces around colons",
    ),
    pytest.param(
        b"stat:REJECTD id:ab-12 Text:hi: stat:DELIVRD id:zz",
        "ab-12",
        "REJECTD",
        None,
        None,
        "hi: stat:DELIVRD id:zz",
        id="text swallows the rest",
    ),
    pytest.param(
        b"id:9 submit_date:2301011200 done_date:2301011300 stat:delivered err:000\x00",
        "9",
        "DELIVRD",
        "000",
        datetime(2023, 1, 1, 13, 0),
        None,
        id="underscored dates, long stat, NUL-terminated",
    ),
    pytest.param(
        b"id:42\nsub:001\ndlvrd:001\nstat:DELIVRD\nerr:000",
        "42",
        "DELIVRD",
        "000",
        None,
        None,
        id="newline-separated",
    ),
    pytest.param(
        b"id:a:b sub:001 dlvrd:001 submit date:2301011200 done date:2301011201 stat:DELIVRD",
        "a:b",
        "DELIVRD",
        None,
        datetime(2023, 1, 1, 12, 1),
        None,
        id="colon inside the id",
    ),
    pytest.param(
        b"id:5 sub:001 dlvrd:001 submit date:2313011200 done date:garbage stat:ENROUTE err:000",
        "5",
        "ENROUTE",
        "000",
        None,
        None,
        id="bad dates are None",
    ),
    pytest.param(
        b"id:5 stat:WHATEVER",
        "5",
        "UNKNOWN",
        None,
        None,
        None,
        id="unrecognised stat",
    ),
]


@pytest.mark.parametrize(("sm", "message_id", "stat", "err", "done_date", "text"), REAL_WORLD)
def test_real_world_text_receipts(
    sm: bytes,
    message_id: str,
    stat: str,
    err: str | None,
    done_date: datetime | None,
    text: str | None,
) -> None:
    r = parse_receipt(sm, {})
    assert (r.message_id, r.stat, r.err, r.done_date, r.text) == (
        message_id,
        stat,
        err,
        done_date,
        text,
    )


def test_ucs2_receipt_and_message_payload() -> None:
    expected = parse_receipt(CANONICAL, {})
    assert parse_receipt(CANONICAL.decode().encode("utf-16-be"), {}) == expected
    assert parse_receipt(b"", {TAG_MESSAGE_PAYLOAD: CANONICAL}) == expected


def test_tlv_only_receipt() -> None:
    r = parse_receipt(
        b"",
        {
            TAG_RECEIPTED_MESSAGE_ID: b"A1B2C3\x00",
            TAG_MESSAGE_STATE: b"\x05",
            TAG_NETWORK_ERROR_CODE: b"\x03\x00\x22",
        },
    )
    assert r == Receipt(
        message_id="A1B2C3",
        stat="UNDELIV",
        err="034",  # the TLV's error code stands in for the missing err: field
        network_error_code=b"\x03\x00\x22",
        message_state=5,
    )
    assert r.network_error == (3, 0x22)
    assert r.network_error_fields == {"network_type": 3, "network": "GSM", "code": 34}
    assert r.status is DlrStatus.UNDELIVERABLE


def test_tlvs_win_over_text() -> None:
    r = parse_receipt(
        CANONICAL, {TAG_RECEIPTED_MESSAGE_ID: b"499602D2\x00", TAG_MESSAGE_STATE: b"\x03"}
    )
    assert (r.message_id, r.stat, r.message_state) == ("499602D2", "EXPIRED", 3)
    assert (r.err, r.text, r.sub) == ("000", "Hello from the sim", 1)  # the rest from text


def test_malformed_tlvs_fall_back_to_text() -> None:
    r = parse_receipt(
        CANONICAL,
        {
            TAG_RECEIPTED_MESSAGE_ID: b"\x00",
            TAG_MESSAGE_STATE: b"\x09",
            TAG_NETWORK_ERROR_CODE: b"\x03",
        },
    )
    assert (r.message_id, r.stat, r.message_state, r.network_error_code) == (
        "1234567890",
        "DELIVRD",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("sm", "tlvs", "field"),
    [
        (b"", {}, "id"),
        (b"hello world", {}, "id"),
        (b"stat:DELIVRD err:000", {}, "id"),
        (b"id: stat:DELIVRD", {}, "id"),
        (b"my id:42 is here", {}, "stat"),
        (b"id:42", {TAG_MESSAGE_STATE: b"\x00"}, "stat"),
        (b"stat:DELIVRD", {TAG_RECEIPTED_MESSAGE_ID: b"  \x00"}, "id"),
        (b"", {TAG_MESSAGE_STATE: b"\x02"}, "id"),
    ],
)
def test_not_a_receipt(sm: bytes, tlvs: dict[int, bytes], field: str) -> None:
    with pytest.raises(ReceiptError) as exc:
        parse_receipt(sm, tlvs)
    assert exc.value.field == field
    assert isinstance(exc.value, ValueError)


@pytest.mark.parametrize(
    ("state", "stat", "status", "final"),
    [
        (1, "ENROUTE", DlrStatus.ENROUTE, False),
        (2, "DELIVRD", DlrStatus.DELIVERED, True),
        (3, "EXPIRED", DlrStatus.EXPIRED, True),
        (4, "DELETED", DlrStatus.DELETED, True),
        (5, "UNDELIV", DlrStatus.UNDELIVERABLE, True),
        (6, "ACCEPTD", DlrStatus.ACCEPTED, False),
        (7, "UNKNOWN", DlrStatus.UNKNOWN, True),
        (8, "REJECTD", DlrStatus.REJECTED, True),
    ],
)
def test_states_stats_and_statuses(state: int, stat: str, status: DlrStatus, final: bool) -> None:
    from_tlv = parse_receipt(b"", dict(receipt_tlvs("x", state)))
    from_text = parse_receipt(f"id:x stat:{stat.lower()}".encode(), {})
    for r in (from_tlv, from_text):
        assert (r.stat, r.status, r.is_final) == (stat, status, final)


def test_format_receipt_golden() -> None:
    sm = format_receipt(
        "0a1b2c",
        "delivered",
        submit_date=datetime(2024, 3, 9, 8, 5, 59),
        done_date=datetime(2024, 3, 9, 8, 6),
        text="This text is longer than twenty characters",
    )
    assert sm == (
        b"id:0a1b2c sub:001 dlvrd:001 submit date:2403090805 done date:2403090806"
        b" stat:DELIVRD err:000 text:This text is longer "
    )


def test_format_receipt_rejects_unknown_stat() -> None:
    with pytest.raises(ValueError, match="unknown receipt stat"):
        format_receipt(
            "1", "SENT", submit_date=datetime(2024, 1, 1), done_date=datetime(2024, 1, 1)
        )


def test_receipt_tlvs_golden() -> None:
    assert receipt_tlvs("A1B2C3", "UNDELIV", b"\x03\x00\x22") == [
        (0x001E, b"A1B2C3\x00"),
        (0x0427, b"\x05"),
        (0x0423, b"\x03\x00\x22"),
    ]
    assert receipt_tlvs("1", 2) == [(0x001E, b"1\x00"), (0x0427, b"\x02")]


@pytest.mark.parametrize(("state", "nec"), [(0, None), (9, None), ("SENT", None), (2, b"\x03\x00")])
def test_receipt_tlvs_rejects_bad_values(state: int | str, nec: bytes | None) -> None:
    with pytest.raises(ValueError):
        receipt_tlvs("1", state, nec)


# --- Hypothesis -----------------------------------------------------------------------

_ids = st.text(alphabet="0123456789abcdefABCDEF-", min_size=1, max_size=40)
_dates = st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)).map(
    lambda d: d.replace(second=0, microsecond=0)
)
_stats = st.sampled_from(sorted(receipts.STAT_TO_STATE))
_texts = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


@given(_ids, _stats, _dates, _dates, st.integers(0, 999), st.integers(0, 999), _texts)
def test_format_parse_round_trip(
    message_id: str,
    stat: str,
    submitted: datetime,
    done: datetime,
    sub: int,
    dlvrd: int,
    text: str,
) -> None:
    sm = format_receipt(
        message_id, stat, submit_date=submitted, done_date=done, sub=sub, dlvrd=dlvrd, text=text
    )
    r = parse_receipt(sm, {})
    assert r == Receipt(
        message_id=message_id,
        stat=stat,
        err="000",
        sub=sub,
        dlvrd=dlvrd,
        submit_date=submitted,
        done_date=done,
        text=text[:20].strip(),
    )


@given(_ids, st.integers(1, 8), st.binary(min_size=3, max_size=3))
def test_tlv_round_trip(message_id: str, state: int, nec: bytes) -> None:
    r = parse_receipt(b"", dict(receipt_tlvs(message_id, state, nec)))
    assert (r.message_id, r.message_state, r.network_error_code) == (message_id, state, nec)


_keys = st.sampled_from(
    [
        "id",
        "ID",
        "sub",
        "Dlvrd",
        "submit date",
        "Submit  Date",
        "done_date",
        "stat",
        "err",
        "text",
        "date",
        "foo",
    ]
)
_values = st.text(alphabet="0123456789aDx: -", max_size=12)
_colons = st.sampled_from([":", " :", ": ", " : ", "\t:"])
_gaps = st.sampled_from([" ", "  ", "\t", "\n", " \r\n"])
_CANONICAL_ORDER = ["id", "sub", "dlvrd", "submit date", "done date", "stat", "err", "text"]


def _receipt_text(keys: list[str]) -> st.SearchStrategy[str]:
    item = st.tuples(
        st.booleans(), _colons, _values | st.from_regex(r"[0-9A-Z]{0,10}", fullmatch=True)
    )
    return st.tuples(
        st.lists(item, min_size=len(keys), max_size=len(keys)), _gaps, st.text(" x", max_size=3)
    ).map(
        lambda t: (
            t[2]
            + t[1].join(
                f"{k.upper() if up else k}{colon}{v}"
                for k, (up, colon, v) in zip(keys, t[0], strict=True)
            )
        )
    )


@given(
    _receipt_text(_CANONICAL_ORDER)
    | _receipt_text(_CANONICAL_ORDER[:-1])
    | st.lists(_keys, max_size=10).flatmap(_receipt_text)
)
def test_fast_path_agrees_with_split(text: str) -> None:
    fast = receipts._text_fields(text)
    split = receipts._split_fields(text)
    assert {k: v.strip() for k, v in fast.items() if v is not None} == {
        k: v.strip() for k, v in split.items() if v is not None
    }


def test_fast_path_takes_the_canonical_form() -> None:
    assert receipts._CANONICAL.fullmatch(CANONICAL.decode())
    assert receipts._CANONICAL.fullmatch(
        " ID : 1\tSUB:2  dlvrd:3 Submit Date:4 done date:5 stat:6 err:7"
    )


@given(
    st.binary(max_size=200) | st.builds(bytes.__add__, st.just(CANONICAL[:60]), st.binary()),
    st.dictionaries(
        st.sampled_from(
            [
                TAG_RECEIPTED_MESSAGE_ID,
                TAG_MESSAGE_STATE,
                TAG_NETWORK_ERROR_CODE,
                TAG_MESSAGE_PAYLOAD,
                0x0001,
            ]
        ),
        st.binary(max_size=8),
    ),
)
def test_arbitrary_bytes_give_a_receipt_or_a_receipt_error(
    sm: bytes, tlvs: dict[int, bytes]
) -> None:
    try:
        r = parse_receipt(sm, tlvs)
    except ReceiptError as exc:
        assert exc.field in ("id", "stat")
        return
    assert r.message_id
    assert r.stat in receipts.STAT_TO_STATE
    assert isinstance(r.status, DlrStatus)


@given(
    st.lists(st.tuples(_keys, _values), max_size=12).map(
        lambda pairs: " ".join(f"{k}:{v}" for k, v in pairs).encode()
    )
)
def test_receipt_like_text_never_raises_anything_else(sm: bytes) -> None:
    with contextlib.suppress(ReceiptError):
        parse_receipt(sm, {})
