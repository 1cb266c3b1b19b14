"""The one back-off of this package: the client's retries, its connect budget and the
pusher's retries all pause ``first`` doubling up to ``cap`` seconds."""

from __future__ import annotations

import email.utils
from datetime import datetime, timezone
from typing import Optional

import httpx


def backoff(first: float, cap: float, failures: int) -> float:
    """The pause after ``failures`` (>= 1) failures in a row: ``first`` doubling, at
    most ``cap`` seconds."""
    return float(min(first * 2.0 ** min(max(failures - 1, 0), 30), cap))


def retry_after(response: httpx.Response) -> Optional[float]:
    """`Retry-After` in seconds: delta-seconds or an HTTP date; None when absent or
    unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
