"""Module listings: ``lm``, ``lmv``, ``lmk`` and the ``Unloaded modules:`` list.

::

    start             end                 module name
    fffff804`0c800000 fffff804`0d846000   nt         (pdb symbols)          c:\\sym\\ntkrnlmp.pdb\\...\\ntkrnlmp.pdb
        Loaded symbol image file: ntkrnlmp.exe
        Image path: ntkrnlmp.exe
        Image name: ntkrnlmp.exe
        Timestamp:        Wed Jun 28 04:03:19 2023 (649B3F87)
        CheckSum:         00A5B0C6
        ImageSize:        01046000
        File version:     10.0.19041.3086
        CompanyName:      Microsoft Corporation
    Unloaded modules:
    fffff804`1c7d0000 fffff804`1c7e0000   lwfmgr.sys
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Optional

from dumpkit.model import Module

from ._common import parse_hex

_ADDR = r"[0-9a-fA-F]{8}`[0-9a-fA-F]{8}|[0-9a-fA-F]{8,16}"
_LM_RE = re.compile(rf"^\s*(?P<start>{_ADDR})\s+(?P<end>{_ADDR})\s+(?P<name>[A-Za-z0-9_$.\-]+)(?:\s+(?P<rest>.*))?$")
_STATUS_RE = re.compile(
    r"^(?:[A-Z]\s+)?\((?:deferred|pdb symbols|private pdb symbols|public pdb symbols|no symbols|export symbols|"
    r"symbols|sym|coff symbols|codeview symbols)\)", re.I)
_HEADER_RE = re.compile(r"^\s*start\s+end\s+module name\s*$", re.I)
_UNLOADED_RE = re.compile(r"^\s*Unloaded modules:\s*$", re.I)
_DETAIL_RE = re.compile(
    r"^\s+(?P<key>Loaded symbol image file|Image path|Image name|Timestamp|CheckSum|ImageSize|File version|"
    r"Product version|File flags|File OS|File type|File date|Translations|Information from resource tables|"
    r"CompanyName|ProductName|InternalName|OriginalFilename|ProductVersion|FileVersion|FileDescription|"
    r"LegalCopyright|Symbol file|Mapped memory image file|Browse all global symbols)\s*:?\s*(?P<val>.*)$")


@dataclass
class LmEntry:
    module: str                    # WinDbg module name ('nt', 'lwfmgr')
    base: int
    end: int
    status: str = ""
    symbol_file: Optional[str] = None
    unloaded: bool = False
    details: Dict[str, str] = field(default_factory=dict)

    def image_name(self) -> str:
        """Best guess at the file name: lmv 'Image name', an unloaded entry's name, the PDB name, else '.sys'."""
        for key in ("Image name", "Loaded symbol image file", "OriginalFilename"):
            v = self.details.get(key, "").strip()
            if v and "." in v:
                return v.replace("/", "\\").rsplit("\\", 1)[-1]
        if "." in self.module and self.module.rsplit(".", 1)[-1].lower() in ("sys", "dll", "exe", "drv", "efi"):
            return self.module
        if self.symbol_file:
            stem = self.symbol_file.replace("/", "\\").rsplit("\\", 1)[-1]
            if stem.lower().endswith(".pdb"):
                stem = stem[:-4]
                ext = "exe" if self.module.lower() == "nt" else ("dll" if self.module.lower() == "hal" else "sys")
                if stem:
                    return f"{stem}.{ext}"
        low = self.module.lower()
        if low == "nt":
            return "ntoskrnl.exe"
        if low == "hal":
            return "hal.dll"
        return f"{self.module}.sys"

    def to_module(self) -> Module:
        size = self.end - self.base if self.end > self.base else 0
        path = self.details.get("Image path") or None
        ts = None
        m = re.search(r"\(([0-9A-Fa-f]{8})\)", self.details.get("Timestamp", ""))
        if m:
            ts = int(m.group(1), 16)
        ck = parse_hex(self.details.get("CheckSum", "").strip().split(" ")[0]) if self.details.get("CheckSum") else None
        return Module(name=self.image_name(), base=self.base, size=size, path=path, timestamp=ts, checksum=ck,
                      unloaded=self.unloaded)


def is_lm_header(line: str) -> bool:
    return bool(_HEADER_RE.match(line))


def is_unloaded_header(line: str) -> bool:
    return bool(_UNLOADED_RE.match(line))


def parse_lm_line(line: str, in_listing: bool) -> Optional[LmEntry]:
    """An ``lm`` row; outside a listing only rows with a symbol-status column are accepted."""
    m = _LM_RE.match(line)
    if not m:
        return None
    rest = (m.group("rest") or "").strip()
    status_m = _STATUS_RE.match(rest)
    if not in_listing and not status_m:
        return None
    if rest and not status_m and in_listing:
        # a stack line also starts with two addresses: refuse anything that has a call site shape
        if "!" in rest or ":" in rest.split()[0] or "+0x" in rest:
            return None
    name = m.group("name")
    if "!" in name or "+" in name:
        return None
    base, end = parse_hex(m.group("start")), parse_hex(m.group("end"))
    if base is None or end is None or end < base:
        return None
    status = status_m.group(0) if status_m else ""
    symfile = rest[len(status):].strip() if status_m else None
    return LmEntry(module=name, base=base, end=end, status=status, symbol_file=symfile or None)


def parse_detail(line: str) -> Optional[tuple]:
    """An ``lmv`` detail line -> (key, value)."""
    m = _DETAIL_RE.match(line)
    if not m:
        return None
    return m.group("key"), m.group("val").strip()
