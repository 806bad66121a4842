"""How long a certificate has left, in whole days (UTC), and how a notification says it.

Rule (issue 15, item 5): days are whole days between the certificate's NotAfter (ACM
DescribeCertificate ``NotAfter``, the X.509 notAfter) and now, both in UTC, rounded towards
zero: 25 days and 23 hours left is "25 days left"; 3 days and 2 hours past NotAfter is
"expired 3 days ago". Less than a whole day either way is said as such, never "0 days".
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["days_left", "expiry_phrase", "format_not_after"]


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is read as UTC (boto3 and moto give aware ones)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def days_left(not_after: datetime, now: datetime) -> int:
    """Whole days from ``now`` to ``not_after`` (UTC), rounded towards zero; negative once past.

    ``not_after - now`` of 25 days 23 hours -> 25; of -3 days 2 hours (expired 3 days and 2
    hours ago) -> -3; anything within one day either side -> 0.
    """
    delta = _utc(not_after) - _utc(now)
    if delta.total_seconds() >= 0:
        return delta.days
    return -((-delta).days)


def format_not_after(not_after: datetime) -> str:
    """``not_after`` as a notification shows it: ``2027-12-28 23:59:59 UTC``."""
    return _utc(not_after).strftime("%Y-%m-%d %H:%M:%S UTC")


def expiry_phrase(not_after: datetime, now: datetime) -> str:
    """One line for a notification: when the certificate expires (or expired) and how far off.

    ``expires at 2027-12-28 23:59:59 UTC, 25 days left`` / ``..., 1 day left`` /
    ``..., less than a day left``; once past: ``expired at 2026-11-28 23:59:59 UTC, 3 days ago`` /
    ``..., less than a day ago``. Days as :func:`days_left`.
    """
    at = format_not_after(not_after)
    days = days_left(not_after, now)
    past = _utc(not_after) <= _utc(now)
    count = abs(days)
    if count == 0:
        amount = "less than a day"
    else:
        amount = f"{count} day{'s' if count != 1 else ''}"
    return f"expired at {at}, {amount} ago" if past else f"expires at {at}, {amount} left"
