"""The one place the package reads the time, so tests can freeze it."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def to_utc_naive(moment: datetime) -> datetime:
    """
    Return ``moment`` converted to UTC without tzinfo, as MySQL ``DATETIME`` columns hold it.

    :param moment: an aware datetime; a naive one is refused because its zone is unknown.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("refusing a naive datetime: its time zone is unknown")
    return moment.astimezone(UTC).replace(tzinfo=None)


def isoformat_z(moment: datetime) -> str:
    """Format an aware datetime as ISO 8601 in UTC with a ``Z`` suffix, to the second."""
    return to_utc_naive(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def token_sha256(token: str) -> str:
    """Return the hex SHA-256 of a token: the key the token table deduplicates on."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def fingerprint(token: str) -> str:
    """Return a short, non-reversible name for a token, safe to log and show."""
    return token_sha256(token)[:12]
