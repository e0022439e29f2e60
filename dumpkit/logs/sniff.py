"""What a file is, from its content: collection tools rename and flatten the logs they gather
(``setupact (3).log``, ``Panther_UnattendGC_setupact.txt``, ``log_0012.dat``), so a folder is read
by what each file holds, whatever its name.

:func:`sniff_content` looks at the first bytes (``SNIFF_BYTES``) and returns a :class:`Sniff`:
the kind of log (``setupapi``, ``panther``, ``cbs``, ``setupdiag``, ``ini``), a dump, an archive, an
event log, or why the file is not a setup log (binary, empty, text without setup-log lines).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import TextParseError

__all__ = ["Sniff", "sniff_content", "SNIFF_BYTES", "LOG_KINDS"]

SNIFF_BYTES = 64 << 10          #: bytes looked at per file
LOG_KINDS = ("setupapi", "panther", "cbs", "setupdiag", "ini")

# every pattern is anchored or bounded: the sample is at most SNIFF_BYTES characters
_SETUPAPI = re.compile(r"^(?:>>>|<<<)\s{1,8}(?:\[|Section (?:start|end))|^\[(?:Device Install|Boot Session|"
                       r"SetupAPI Log)", re.M)
_PANTHER_TS = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d, {0,40}(?:Info|Error|Warning|Perf)\b", re.M)
_CBS_TS = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d, {0,40}(?:Info|Error|Warning|Perf) {1,40}(?:CBS|CSI|DISM)\b",
                     re.M)
_PANTHER_BARE = re.compile(r"^(?:(?:Info|Error|Warning) {1,40})?\[(?:[A-Za-z][\w.-]{0,40}\.(?:exe|EXE|dll|DLL)|"
                           r"Shell Unattend|Action Queue)\] ", re.M)
_OOBE_WRITERS = re.compile(r"\[(?:oobeldr|windeploy|audit|msoobe|pnpunattend|oobe)\.exe\]|\[Shell Unattend\]", re.I)
_SETUPDIAG = re.compile(r"^(?:Matching Profile found:|SetupDiag version:|Error: SetupDiag reports)|<SetupDiag\b|"
                        r"\"ProfileName\"\s*:|unable to match to any known failure signatures", re.M)
_INI = re.compile(r"^\s*(?:CurrentPhase|RollbackDirectory|LogDirectory|SourceOSVersion|DownlevelOSVersion|"
                  r"SourceDirDriveLetter)\s*=", re.M)
_MAX_COUNT = 200


@dataclass(frozen=True)
class Sniff:
    """The verdict on one file: ``kind`` (a log kind, ``dump``, ``archive``, ``evtx``, or
    ``skip``), ``phase`` (``oobe`` for UnattendGC writers, else ""), ``why`` in words."""

    kind: str
    why: str
    phase: str = ""

    @property
    def is_log(self) -> bool:
        return self.kind in LOG_KINDS


def _count(rx: "re.Pattern[str]", text: str) -> int:
    n = 0
    for _ in rx.finditer(text):
        n += 1
        if n >= _MAX_COUNT:
            break
    return n


def sniff_content(head: bytes) -> Sniff:
    """What ``head`` (the first bytes of a file) looks like."""
    if not head:
        return Sniff("skip", "empty file")
    for sig, what in ((b"PAGEDU64", "a 64-bit kernel dump"), (b"PAGEDUMP", "a 32-bit kernel dump"),
                      (b"MDMP", "a user-mode minidump")):
        if head.startswith(sig):
            return Sniff("dump", what)
    for sig, what in ((b"PK\x03\x04", "zip"), (b"MSCF", "cabinet"), (b"7z\xbc\xaf\x27\x1c", "7-Zip"),
                      (b"Rar!", "RAR")):
        if head.startswith(sig):
            return Sniff("archive", f"a {what} archive inside the folder (give it to 'dumpkit logs' on its own)")
    if head.startswith(b"ElfFile\x00"):
        return Sniff("evtx", "a Windows event log (.evtx): not read")
    from ._text import sniff_encoding
    try:
        enc, skip = sniff_encoding(head)
    except TextParseError:
        return Sniff("skip", "binary data, not a text log")
    try:
        text = head[skip:].decode(enc, errors="replace")
    except LookupError:
        return Sniff("skip", f"unknown text encoding {enc}")
    if not text.strip():
        return Sniff("skip", "only blank text")
    n_setupapi = _count(_SETUPAPI, text)
    if n_setupapi:
        return Sniff("setupapi", f"setupapi log ({n_setupapi}{'+' if n_setupapi >= _MAX_COUNT else ''} "
                                 "section markers)")
    n_ts = _count(_PANTHER_TS, text)
    n_diag = _count(_SETUPDIAG, text)
    if n_diag and n_ts < 3:
        return Sniff("setupdiag", "SetupDiag results")
    oobe = "oobe" if _OOBE_WRITERS.search(text) else ""
    if n_ts:
        n_cbs = _count(_CBS_TS, text)
        if n_cbs * 2 > n_ts:
            return Sniff("cbs", f"CBS/DISM log ({n_ts}{'+' if n_ts >= _MAX_COUNT else ''} timestamped lines)")
        return Sniff("panther", f"Panther-style log ({n_ts}{'+' if n_ts >= _MAX_COUNT else ''} timestamped lines"
                                + (", UnattendGC writers" if oobe else "") + ")", oobe)
    if _INI.search(text):
        return Sniff("ini", "setup ini (rollbackinfo/SetupPlatform keys)")
    n_bare = _count(_PANTHER_BARE, text)
    if n_bare >= 2:
        return Sniff("panther", f"Panther-style lines without timestamps ({n_bare} '[writer.exe]' lines"
                                + (", UnattendGC writers" if oobe else "") + ")", oobe)
    return Sniff("skip", "text, but no setup-log lines in the first "
                         f"{min(len(head), SNIFF_BYTES) // 1024 or 1} KiB")
