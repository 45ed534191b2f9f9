"""The package's one date parser: unix seconds (UTC) from unix seconds or a date.

Used wherever a time comes from a user: the replay window (``replay``, ``events.replay.start`` in a
config) and the estimation window (``estimate``, ``perpjax fit --start/--end``).
"""

from __future__ import annotations

import numbers

import pandas as pd

__all__ = ["format_time", "parse_time"]


def parse_time(value, name: str = "time") -> int:
    """Unix seconds (UTC) from unix seconds or a date.

    Args:
        value: unix seconds (an integer, or a float with no fractional part; numpy scalars too; or a
            string of 9 or more digits, as typed on a command line: after 1973-03-03), or a
            date: an ISO 8601 string (``"2022-01-01"``, ``"2020-03-12T00:00:00Z"``,
            ``"2020-03-12T01:00:00+01:00"``), a ``datetime`` or a ``pandas.Timestamp``. A date without
            a time zone is UTC; one with a time zone is converted.
        name: the field the value came from, named in the error message.

    Returns:
        Whole unix seconds as an int.

    Raises:
        ValueError: a bool, a fractional number of seconds, a value that is not a date, or a date
            that is not a whole second; the message starts with ``name``.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name}: must be unix seconds or an ISO 8601 date (UTC), got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        if not float(value).is_integer():
            raise ValueError(f"{name}: unix seconds must be a whole number, got {value!r}")
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value.strip().lstrip("-")) >= 9:
        return int(value.strip())  # unix seconds typed on a command line ("1646092800"); 8 digits stay YYYYMMDD
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name}: cannot parse {value!r}: expected unix seconds or an ISO 8601 date (UTC)") from e
    if ts is pd.NaT:
        raise ValueError(f"{name}: cannot parse {value!r}: expected unix seconds or an ISO 8601 date (UTC)")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    ns = int(ts.value)
    if ns % 1_000_000_000:
        raise ValueError(f"{name}: {value!r} is not a whole number of seconds")
    return ns // 1_000_000_000


def format_time(seconds) -> str:
    """ISO 8601 UTC text of whole unix seconds, ``"2022-03-01T00:00:00Z"`` (``parse_time`` reads it back)."""
    return pd.Timestamp(int(seconds), unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
