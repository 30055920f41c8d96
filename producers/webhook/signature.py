"""Webhook signatures (pure): HMAC-SHA256 over ``<timestamp>.<body>``, a replay window, and
any of the configured secrets (two while a secret is rotated).

The sender puts the Unix time in seconds in ``X-Supplybus-Timestamp`` and
``v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`` in ``X-Supplybus-Signature``. During a
rotation it may send one signature per secret, comma-separated: any valid one passes. The
verdict says only *which* check failed ("signature" or "timestamp"), never which secret or
candidate came close. A timestamp outside the window is reported only for a request whose
signature is valid, so an unsigned request learns nothing about the clock.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Literal

Verdict = Literal["ok", "signature", "timestamp"]

SCHEME = "v1"
TIMESTAMP_HEADER = "X-Supplybus-Timestamp"
SIGNATURE_HEADER = "X-Supplybus-Signature"
_MAX_CANDIDATES = 4  # signatures looked at per request (two secrets, with room to spare)
_MAX_TIMESTAMP_DIGITS = 12


def signing_string(timestamp: str, body: bytes) -> bytes:
    """What is signed: the timestamp header's text, a dot, then the body's exact bytes."""
    return timestamp.encode("ascii") + b"." + body


def digest(secret: str, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of the signing string under ``secret``."""
    return hmac.new(secret.encode(), signing_string(timestamp, body), hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-Supplybus-Signature`` value for ``body`` sent at ``timestamp`` (for senders)."""
    return f"{SCHEME}={digest(secret, str(timestamp), body)}"


def parse_timestamp(value: str | None) -> int | None:
    """The header's Unix seconds, or None unless it is 1 to 12 ASCII digits."""
    if value is None or not 0 < len(value) <= _MAX_TIMESTAMP_DIGITS:
        return None
    if not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def candidates(value: str | None) -> list[str]:
    """The ``v1`` hex digests of a signature header (other schemes and junk are ignored)."""
    if not value:
        return []
    found = []
    for part in value.split(",")[:_MAX_CANDIDATES]:
        scheme, sep, hexdigest = part.strip().partition("=")
        if sep and scheme == SCHEME and len(hexdigest) == 64 and hexdigest.isascii():
            found.append(hexdigest.lower())
    return found


def verify(
    secrets: Sequence[str],
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float,
    tolerance_s: float,
) -> Verdict:
    """Check a request's signature, then its age (``|now - timestamp| <= tolerance_s``).

    Every candidate is compared with every secret in constant time, without stopping early.
    """
    seconds = parse_timestamp(timestamp)
    if seconds is None or timestamp is None:
        return "timestamp"
    expected = [digest(secret, timestamp, body) for secret in secrets]
    matched = False
    for candidate in candidates(signature):
        for good in expected:
            matched |= hmac.compare_digest(candidate, good)
    if not matched:
        return "signature"
    if abs(now - seconds) > tolerance_s:
        return "timestamp"
    return "ok"
