"""x64 UNWIND_INFO decoding (the .xdata records that .pdata entries point at).

Decoding is a hot path of the stack walker, so it is plain ``struct`` over the
bytes.  Each UNWIND_CODE is turned into an :class:`UnwindCode` whose ``value``
already holds the decoded operand (a byte size, a frame offset, a register
number...), so the unwinder never looks at slots again.
"""
from __future__ import annotations

import struct
from typing import List, NamedTuple, Optional, Tuple

from ..errors import UnwindError

# unwind operation codes
UWOP_PUSH_NONVOL = 0
UWOP_ALLOC_LARGE = 1
UWOP_ALLOC_SMALL = 2
UWOP_SET_FPREG = 3
UWOP_SAVE_NONVOL = 4
UWOP_SAVE_NONVOL_FAR = 5
UWOP_EPILOG = 6            # version 2; UWOP_SAVE_XMM (obsolete) in version 1
UWOP_SPARE_CODE = 7        # UWOP_SAVE_XMM_FAR (obsolete) in version 1
UWOP_SAVE_XMM128 = 8
UWOP_SAVE_XMM128_FAR = 9
UWOP_PUSH_MACHFRAME = 10

UWOP_NAMES = {
    0: "PUSH_NONVOL", 1: "ALLOC_LARGE", 2: "ALLOC_SMALL", 3: "SET_FPREG", 4: "SAVE_NONVOL",
    5: "SAVE_NONVOL_FAR", 6: "EPILOG", 7: "SPARE_CODE", 8: "SAVE_XMM128", 9: "SAVE_XMM128_FAR",
    10: "PUSH_MACHFRAME",
}

UNW_FLAG_EHANDLER = 1
UNW_FLAG_UHANDLER = 2
UNW_FLAG_CHAININFO = 4

MAX_CODES = 255            # CountOfCodes is a byte

_HDR = struct.Struct("<BBBB")
_RF = struct.Struct("<III")
_U32 = struct.Struct("<I")


class RuntimeFunction(NamedTuple):
    """One .pdata entry: [begin, end) RVAs and the RVA of its UNWIND_INFO."""

    begin: int
    end: int
    unwind_rva: int

    def __repr__(self) -> str:
        return f"RuntimeFunction({self.begin:#x}-{self.end:#x} unwind={self.unwind_rva:#x})"


class UnwindCode(NamedTuple):
    """One decoded unwind operation.

    ``offset`` is the CodeOffset byte (prolog offset after the instruction; for
    v2 EPILOG codes the raw byte).  ``value`` is the decoded operand: the
    allocation size in bytes (ALLOC_*), the offset from the establisher frame in
    bytes (SAVE_*), the error-code flag (PUSH_MACHFRAME), the epilog size or
    offset from the function end (EPILOG), 0 otherwise.  ``info`` is the OpInfo
    nibble (the register number for PUSH/SAVE ops).  ``slot`` is the index of the
    first slot in the UNWIND_CODE array.
    """

    offset: int
    op: int
    info: int
    value: int
    slot: int

    @property
    def name(self) -> str:
        return UWOP_NAMES.get(self.op, f"OP{self.op}")

    def __repr__(self) -> str:
        return f"<{self.name} @{self.offset:#x} info={self.info} value={self.value:#x}>"


class UnwindInfo:
    """A decoded UNWIND_INFO record."""

    __slots__ = ("rva", "version", "flags", "prolog_size", "count", "frame_register", "frame_offset",
                 "codes", "chained", "handler_rva", "fpreg_offset")

    def __init__(self, rva: int, version: int, flags: int, prolog_size: int, count: int,
                 frame_register: int, frame_offset: int, codes: Tuple[UnwindCode, ...],
                 chained: Optional[RuntimeFunction], handler_rva: Optional[int]) -> None:
        self.rva = rva
        self.version = version
        self.flags = flags
        self.prolog_size = prolog_size
        self.count = count
        self.frame_register = frame_register
        self.frame_offset = frame_offset          # already scaled (bytes: FrameOffset * 16)
        self.codes = codes
        self.chained = chained
        self.handler_rva = handler_rva
        # CodeOffset of the SET_FPREG code, if any (establisher frame inside the prolog)
        self.fpreg_offset: Optional[int] = next((c.offset for c in codes if c.op == UWOP_SET_FPREG), None)

    @property
    def is_chained(self) -> bool:
        return bool(self.flags & UNW_FLAG_CHAININFO)

    def __repr__(self) -> str:
        fr = f" fp=r{self.frame_register}+{self.frame_offset:#x}" if self.frame_register else ""
        ch = f" chained->{self.chained.begin:#x}" if self.chained else ""
        return (f"<UnwindInfo @{self.rva:#x} v{self.version} flags={self.flags:#x} prolog={self.prolog_size}"
                f" codes={len(self.codes)}{fr}{ch}>")


def unwind_info_size(header: bytes) -> int:
    """Bytes needed to decode the record whose first 4 bytes are ``header``."""
    count = header[2]
    return 4 + 2 * ((count + 1) & ~1)


def decode_unwind_info(data: bytes, rva: int = 0, *, tail: Optional[bytes] = None) -> UnwindInfo:
    """Decode UNWIND_INFO from ``data`` (header + code slots).

    ``tail`` holds the bytes after the (even-padded) code array: the chained
    RUNTIME_FUNCTION (12 bytes) or the handler RVA (4 bytes); missing or short
    tails raise :class:`UnwindError` for chained records and give
    ``handler_rva=None`` otherwise.
    """
    if len(data) < 4:
        raise UnwindError("UNWIND_INFO header cut short", offset=rva, expected="4 bytes")
    vf, prolog, count, frame = _HDR.unpack_from(data, 0)
    version, flags = vf & 7, vf >> 3
    if version not in (1, 2):
        raise UnwindError(f"unsupported UNWIND_INFO version {version}", offset=rva, expected="version 1 or 2")
    if len(data) < 4 + 2 * count:
        raise UnwindError("UNWIND_INFO code array cut short", offset=rva, expected=f"{count} code slots")
    slots = struct.unpack_from(f"<{count}H", data, 4)
    codes: List[UnwindCode] = []
    i = 0
    while i < count:
        s = slots[i]
        off = s & 0xFF
        op = (s >> 8) & 0x0F
        info = s >> 12
        need = 1
        value = 0
        if op == UWOP_PUSH_NONVOL or op == UWOP_SET_FPREG:
            pass
        elif op == UWOP_ALLOC_SMALL:
            value = info * 8 + 8
        elif op == UWOP_ALLOC_LARGE:
            if info == 0:
                need = 2
            elif info == 1:
                need = 3
            else:
                raise UnwindError(f"ALLOC_LARGE with OpInfo {info}", offset=rva, expected="OpInfo 0 or 1")
        elif op in (UWOP_SAVE_NONVOL, UWOP_SAVE_XMM128):
            need = 2
        elif op in (UWOP_SAVE_NONVOL_FAR, UWOP_SAVE_XMM128_FAR):
            need = 3
        elif op == UWOP_EPILOG:
            # v2: one slot per epilog descriptor; v1: obsolete SAVE_XMM (2 slots)
            need = 1 if version == 2 else 2
            if version == 2:
                # the first code of the array carries the epilog size, the others an offset from End
                value = off if i == 0 else off | (info << 8)
        elif op == UWOP_SPARE_CODE:
            need = 3
        elif op == UWOP_PUSH_MACHFRAME:
            if info > 1:
                raise UnwindError(f"PUSH_MACHFRAME with OpInfo {info}", offset=rva, expected="OpInfo 0 or 1")
            value = info
        else:
            raise UnwindError(f"unknown unwind op {op}", offset=rva + 4 + 2 * i, expected="op 0..10")
        if i + need > count:
            raise UnwindError(f"{UWOP_NAMES.get(op, op)} needs {need} slots, {count - i} left",
                              offset=rva + 4 + 2 * i, expected="complete unwind code")
        if op == UWOP_ALLOC_LARGE:
            value = slots[i + 1] * 8 if info == 0 else slots[i + 1] | (slots[i + 2] << 16)
        elif op == UWOP_SAVE_NONVOL:
            value = slots[i + 1] * 8
        elif op == UWOP_SAVE_XMM128:
            value = slots[i + 1] * 16
        elif op in (UWOP_SAVE_NONVOL_FAR, UWOP_SAVE_XMM128_FAR):
            value = slots[i + 1] | (slots[i + 2] << 16)
        codes.append(UnwindCode(off, op, info, value, i))
        i += need
    chained = None
    handler = None
    if flags & UNW_FLAG_CHAININFO:
        if tail is None or len(tail) < 12:
            raise UnwindError("chained UNWIND_INFO without its RUNTIME_FUNCTION", offset=rva,
                              expected="12-byte chained entry")
        chained = RuntimeFunction(*_RF.unpack_from(tail, 0))
    elif flags & (UNW_FLAG_EHANDLER | UNW_FLAG_UHANDLER):
        if tail is not None and len(tail) >= 4:
            handler = _U32.unpack_from(tail, 0)[0]
    return UnwindInfo(rva, version, flags, prolog, count, frame & 0x0F, (frame >> 4) * 16,
                      tuple(codes), chained, handler)


def epilogs_v2(info: UnwindInfo, end: int) -> List[Tuple[int, int]]:
    """(start_rva, size) of each epilog a version-2 record describes for a function ending at ``end``."""
    codes = info.codes
    if info.version != 2 or not codes or codes[0].op != UWOP_EPILOG:
        return []
    size = codes[0].offset
    out: List[Tuple[int, int]] = []
    if codes[0].info & 1:
        out.append((end - size, size))
    for c in codes[1:]:
        if c.op != UWOP_EPILOG:
            break
        if c.value == 0:         # padding
            continue
        out.append((end - c.value, size))
    return out
