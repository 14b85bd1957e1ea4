"""TOTP (RFC 6238): the RFC's test vectors, the window for clock drift, and replay refusal."""

import base64
import datetime as dt

import pytest

from auth import totp

# RFC 6238 appendix B, SHA1, key "12345678901234567890". The RFC gives 8 digits; a 6-digit
# code is the same truncation modulo 10^6, i.e. its last six digits.
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
RFC_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


def utc(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


@pytest.mark.parametrize(("seconds", "expected"), RFC_VECTORS)
def test_rfc6238_sha1_vectors(seconds, expected):
    assert totp.code_at(RFC_SECRET, utc(seconds)) == expected[-6:]
    assert totp.matching_step(RFC_SECRET, expected[-6:], utc(seconds), window=0) == seconds // 30


@pytest.mark.parametrize("code", ["12345", "1234567", "12345a", "١٢٣٤٥٦", "123 456", "", "+12345"])
def test_only_six_ascii_digits_are_well_formed(code):
    assert not totp.is_well_formed(code)


def test_one_step_of_drift_either_way_is_accepted_two_are_not():
    secret = totp.new_secret()
    now = utc(1_800_000_000)
    step = now.timestamp() // 30
    for offset in (-1, 0, 1):
        code = totp.code_at(secret, now + dt.timedelta(seconds=30 * offset))
        assert totp.matching_step(secret, code, now, window=1) == step + offset
    for offset in (-2, 2):
        code = totp.code_at(secret, now + dt.timedelta(seconds=30 * offset))
        assert totp.matching_step(secret, code, now, window=1) is None


def test_a_code_is_accepted_once():
    secret = totp.new_secret()
    now = utc(1_800_000_000)
    code = totp.code_at(secret, now)
    step = totp.accepted_step(secret, code, now, last_used_step=None)
    assert step == now.timestamp() // 30
    assert totp.accepted_step(secret, code, now, last_used_step=step) is None
    # An older code, still inside the drift window, is refused too once a newer one was used.
    earlier = totp.code_at(secret, now - dt.timedelta(seconds=30))
    assert totp.accepted_step(secret, earlier, now, last_used_step=step) is None
    later = now + dt.timedelta(seconds=30)
    assert totp.accepted_step(secret, totp.code_at(secret, later), later, last_used_step=step) == step + 1


def test_naive_time_is_refused():
    with pytest.raises(ValueError):
        totp.matching_step(totp.new_secret(), "123456", dt.datetime(2026, 1, 1))


def test_provisioning_uri_names_issuer_and_account():
    uri = totp.provisioning_uri(RFC_SECRET, "delegate@example.org", "COP Registration")
    assert uri.startswith("otpauth://totp/COP%20Registration:delegate%40example.org?")
    assert f"secret={RFC_SECRET}" in uri and "issuer=COP%20Registration" in uri
