"""KUSER_SHARED_DATA: the page the kernel shares read-only with every process.

A dump header records the crash time in UTC only.  The machine's time zone is in
KUSER_SHARED_DATA.TimeZoneBias (offset 0x20, a KSYSTEM_TIME: LowPart u32,
High1Time i32, High2Time i32, in 100 ns units, UTC = local time + bias), so where
a dump holds that page the crash can be told in the machine's own clock, the one
its setup logs are written in.  The page sits at 0xFFFFF78000000000 on x64 and
ARM64 and at 0xFFDF0000 on x86.
"""
from __future__ import annotations

import datetime as _dt
import struct
from typing import Callable, Optional

from ..errors import DumpError

KUSER_SHARED_DATA_64 = 0xFFFFF78000000000
KUSER_SHARED_DATA_32 = 0xFFDF0000
TIME_ZONE_BIAS = 0x20
_KSYSTEM_TIME = struct.Struct("<Iii")
#: time zones run from UTC-12:00 to UTC+14:00
MAX_BIAS = _dt.timedelta(hours=14)


def time_zone_offset(read: Callable[[int, int], Optional[bytes]], pointer_size: int = 8) -> Optional[_dt.timedelta]:
    """The machine's UTC offset (local time minus UTC) from KUSER_SHARED_DATA, or None.

    ``read(va, size)`` returns the bytes or None where the dump lacks them.  A torn
    KSYSTEM_TIME (High1Time != High2Time), an offset that is not a whole minute or is
    beyond +-14 h gives None: no offset is better than a wrong one.
    """
    base = KUSER_SHARED_DATA_64 if pointer_size == 8 else KUSER_SHARED_DATA_32
    try:
        data = read(base + TIME_ZONE_BIAS, _KSYSTEM_TIME.size)
    except DumpError:          # not readable in this dump
        return None
    if not data or len(data) < _KSYSTEM_TIME.size:
        return None
    low, high1, high2 = _KSYSTEM_TIME.unpack_from(data)
    if high1 != high2:
        return None
    bias = (high1 << 32) | low
    if bias % 600_000_000:                     # a whole number of minutes
        return None
    offset = -_dt.timedelta(microseconds=bias // 10)
    if abs(offset) > MAX_BIAS:
        return None
    return offset


def local_crash_time(crash_time: Optional[_dt.datetime], offset: Optional[_dt.timedelta]) -> Optional[_dt.datetime]:
    """``crash_time`` (aware, UTC) in the machine's zone, when the offset is known."""
    if crash_time is None or offset is None or crash_time.tzinfo is None:
        return crash_time
    return crash_time.astimezone(_dt.timezone(offset))


__all__ = ["time_zone_offset", "local_crash_time", "KUSER_SHARED_DATA_64", "KUSER_SHARED_DATA_32"]
