from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from correlation.ids import IdForm, candidate_keys, normalise_id

# (submit_sm_resp id, its form, receipt id, its form): each pair must meet on one key.
QUIRK_PAIRS = [
    ("A1B2C3", "hex", "10597059", "decimal"),  # hex in the response, decimal in the receipt
    ("10597059", "decimal", "a1b2c3", "hex"),  # and the reverse
    ("0000123", "decimal", "123", "decimal"),  # leading zeros on one side
    ("0000007B", "hex", "123", "decimal"),
    ("abcdef", "hex", "ABCDEF", "hex"),  # letter case
    ("abcdef", "text", "ABCDEF", "auto"),
    ("A1B2C3", "auto", "10597059", "auto"),  # auto: a-f means hex, digits only decimal
    ("0x1F", "hex", "31", "decimal"),
    (" 42\x00", "decimal", "2a", "hex"),  # padding and a stray NUL
    (
        "3F2504E0-4F89-11D3-9A0C-0305E82C3301",
        "auto",
        "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        "decimal",
    ),  # UUIDs are text whatever the form says
    ("MSG-000123", "hex", "msg-000123", "text"),
]


@pytest.mark.parametrize(("submit", "submit_form", "receipt", "receipt_form"), QUIRK_PAIRS)
def test_quirk_pairs_meet_on_one_key(
    submit: str, submit_form: IdForm, receipt: str, receipt_form: IdForm
) -> None:
    assert normalise_id(submit, submit_form) == normalise_id(receipt, receipt_form)


@pytest.mark.parametrize(
    ("raw", "form", "key"),
    [
        ("10597059", "decimal", "a1b2c3"),
        ("A1B2C3", "hex", "a1b2c3"),
        ("000", "decimal", "0"),
        ("000", "hex", "0"),
        ("1234", "auto", "4d2"),  # ambiguous: auto reads digits as decimal
        ("12ab", "auto", "12ab"),
        ("12AB", "decimal", "12ab"),  # not decimal: kept as text
        ("00AB", "text", "00ab"),  # text keeps zeros
        ("  Some-ID  ", "text", "some-id"),
        ("", "auto", ""),
        ("-5", "decimal", "-5"),  # signs are not numbers here
        ("1_000", "decimal", "1_000"),  # nor are Python's digit separators
        ("١٢٣", "decimal", "١٢٣"),  # nor non-ASCII digits
    ],
)
def test_normalise_id(raw: str, form: IdForm, key: str) -> None:
    assert normalise_id(raw, form) == key


def test_unknown_form_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown message id form"):
        normalise_id("1", "octal")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "keys"),
    [
        ("1234", ("4d2", "1234")),
        ("0000123", ("7b", "123", "0000123")),
        ("A1B2C3", ("a1b2c3",)),
        ("00ff", ("ff", "00ff")),
        ("0", ("0",)),
        ("MSG-1", ("msg-1",)),
        ("", ()),
    ],
)
def test_candidate_keys(raw: str, keys: tuple[str, ...]) -> None:
    assert candidate_keys(raw) == keys


def test_candidate_keys_include_every_configured_reading() -> None:
    for raw in ("1234", "0x10", "00AB", "abc", "uuid-like-1"):
        for form in ("decimal", "hex", "auto", "text"):
            assert normalise_id(raw, form) in candidate_keys(raw)


def _hex_spellings(n: int) -> st.SearchStrategy[str]:
    digits = format(n, "x")
    return st.tuples(
        st.integers(0, 20), st.lists(st.booleans(), min_size=len(digits), max_size=len(digits))
    ).map(
        lambda t: (
            "0" * t[0] + "".join(c.upper() if up else c for c, up in zip(digits, t[1], strict=True))
        )
    )


@given(st.integers(0, 2**256).flatmap(lambda n: st.tuples(st.just(n), _hex_spellings(n))))
def test_hex_and_decimal_spellings_meet(case: tuple[int, str]) -> None:
    n, hex_id = case
    key = normalise_id(str(n), "decimal")
    assert normalise_id(hex_id, "hex") == key
    assert normalise_id("0" * (n % 7) + str(n), "decimal") == key
    assert key in candidate_keys(hex_id)


@given(st.text(max_size=80), st.sampled_from(["decimal", "hex", "auto", "text"]))
def test_normalise_never_fails(raw: str, form: IdForm) -> None:
    assert isinstance(normalise_id(raw, form), str)
    assert isinstance(candidate_keys(raw), tuple)


@given(st.text(max_size=80), st.sampled_from(["hex", "text"]))
def test_hex_and_text_keys_are_stable(raw: str, form: IdForm) -> None:
    key = normalise_id(raw, form)
    assert normalise_id(key, form) == key
