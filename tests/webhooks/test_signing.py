"""Signatures: the gateway's format, every way a header can be wrong, rotation."""

from __future__ import annotations

import pytest

from bastion.errors import BastionError, InvalidSignature
from bastion.webhooks import sign, verify_signature
from examples.shop.gateway import signing as gateway

BODY = b'{"id":"evt_1","type":"charge.succeeded"}'
NOW = 1_900_000_000
SECRET = "whsec_test"


def reason(secret: str | list[str], header: str | None, *, body: bytes = BODY) -> str:
    with pytest.raises(InvalidSignature) as caught:
        verify_signature(secret, body, header, now=NOW)
    return caught.value.reason


def test_sign_writes_the_gateways_format_and_verify_accepts_it() -> None:
    header = sign(SECRET, BODY, NOW)
    assert header == gateway.sign(SECRET, BODY, NOW)
    assert header.startswith(f"t={NOW},v1=")
    verify_signature(SECRET, BODY, header, now=NOW)
    verify_signature(SECRET, BODY, gateway.sign(SECRET, BODY, NOW - 300), now=NOW)
    verify_signature(SECRET, BODY, f" t={NOW} , v1={header.split('v1=')[1]} ", now=NOW)


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (None, "missing"),
        ("", "missing"),
        ("garbage", "malformed"),
        (f"v1={'0' * 64}", "malformed"),
        (f"t=soon,v1={'0' * 64}", "malformed"),
        (f"t=-5,v1={'0' * 64}", "malformed"),
        (f"t={NOW}", "malformed"),
        (f"t={NOW},v1=xyz", "malformed"),
        (f"t={NOW},t={NOW},v1={'0' * 64}", "malformed"),
        (f"t={NOW},v0={'0' * 64}", "malformed"),
        (f"t={NOW},v1={'0' * 64}", "mismatch"),
        (f"t={NOW},v1={'é' * 64}", "malformed"),
        (sign("whsec_other", BODY, NOW), "mismatch"),
        (sign(SECRET, BODY, NOW - 301), "stale"),
        (sign(SECRET, BODY, NOW + 301), "future"),
    ],
)
def test_every_bad_header_is_invalid_signature(header: str | None, why: str) -> None:
    assert reason(SECRET, header) == why


def test_a_changed_body_or_a_replayed_timestamp_does_not_verify() -> None:
    header = sign(SECRET, BODY, NOW)
    assert reason(SECRET, header, body=BODY + b" ") == "mismatch"
    mac = header.split("v1=")[1]
    assert reason(SECRET, f"t={NOW + 1},v1={mac}") == "mismatch"


def test_rotation_several_secrets_and_several_macs() -> None:
    old = sign("whsec_old", BODY, NOW)
    new = sign("whsec_new", BODY, NOW)
    verify_signature(["whsec_new", "whsec_old"], BODY, old, now=NOW)
    verify_signature(["whsec_new", "whsec_old"], BODY, new, now=NOW)
    both = f"{new},v1={old.split('v1=')[1]}"
    verify_signature("whsec_old", BODY, both, now=NOW)
    verify_signature("whsec_new", BODY, both, now=NOW)
    assert reason(["whsec_a", "whsec_b"], both) == "mismatch"


def test_the_tolerance_and_the_scheme_are_parameters() -> None:
    header = sign(SECRET, BODY, NOW - 100)
    verify_signature(SECRET, BODY, header, now=NOW, tolerance_s=100)
    with pytest.raises(InvalidSignature):
        verify_signature(SECRET, BODY, header, now=NOW, tolerance_s=99)
    v2 = sign(SECRET, BODY, NOW, scheme="v2")
    verify_signature(SECRET, BODY, v2, now=NOW, scheme="v2")
    with pytest.raises(InvalidSignature):
        verify_signature(SECRET, BODY, v2, now=NOW)


def test_an_empty_secret_is_a_programming_error_not_a_client_error() -> None:
    with pytest.raises(ValueError, match="non-empty secret"):
        verify_signature("", BODY, sign("", BODY, NOW), now=NOW)
    with pytest.raises(ValueError, match="non-empty secret"):
        verify_signature([], BODY, sign(SECRET, BODY, NOW), now=NOW)


def test_invalid_signature_is_a_400_with_its_own_code() -> None:
    error = InvalidSignature("stale")
    assert isinstance(error, BastionError)
    assert (error.error_code, error.status, error.reason) == ("invalid_signature", 400, "stale")
