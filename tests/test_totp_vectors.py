"""RFC 6238 appendix B: every test vector, for SHA1, SHA256 and SHA512, through pyotp as auth/totp uses it.

tests/test_totp.py checks the app's own 6-digit SHA1 codes against the same table.
"""

import base64
import datetime as dt
import hashlib

import pyotp
import pytest

# Appendix B's seeds: "12345678901234567890" repeated to the length of each hash's output.
SEED = b"12345678901234567890"
SEEDS = {"SHA1": SEED, "SHA256": (SEED * 2)[:32], "SHA512": (SEED * 4)[:64]}
DIGESTS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}

# (time in seconds, SHA1, SHA256, SHA512): the RFC's table, 8 digits.
TABLE = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]
VECTORS = [
    (algorithm, seconds, codes[index])
    for seconds, *codes in TABLE
    for index, algorithm in enumerate(("SHA1", "SHA256", "SHA512"))
]


def utc(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def rfc_totp(algorithm: str) -> pyotp.TOTP:
    secret = base64.b32encode(SEEDS[algorithm]).decode()
    return pyotp.TOTP(secret, digest=DIGESTS[algorithm], digits=8)


def test_the_seeds_have_the_lengths_of_appendix_b():
    assert [len(seed) for seed in SEEDS.values()] == [20, 32, 64]
    assert SEEDS["SHA512"].startswith(SEEDS["SHA256"]) and SEEDS["SHA256"].startswith(SEEDS["SHA1"])


@pytest.mark.parametrize(("algorithm", "seconds", "expected"), VECTORS)
def test_rfc6238_appendix_b(algorithm, seconds, expected):
    otp = rfc_totp(algorithm)
    assert otp.at(seconds) == expected
    assert otp.at(utc(seconds)) == expected
    # The step the RFC names in the same row (T = floor(time / 30)) is the one pyotp verifies against.
    assert otp.verify_and_get_timecode(expected, for_time=utc(seconds), valid_window=0) == seconds // 30
