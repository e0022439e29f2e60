"""Test helper: hand-assembled x64 PE images and fake stack memory for the unwinder tests.

The image is written in mapped layout (PointerToRawData == VirtualAddress), so
the same bytes work as a file and as a memory image.  Sections: .text (0x1000,
code), .rdata (0x8000, unwind info, exports, debug), .pdata (0xC000).
"""
from __future__ import annotations

import struct
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from dumpkit.errors import MissingPageError

TEXT, RDATA, PDATA = 0x1000, 0x8000, 0xC000
SIZE = 0x10000

# unwind op helpers: each returns a list of u16 slots
REG = {n: i for i, n in enumerate(("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                   "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"))}


def code(off: int, op: int, info: int) -> int:
    return off | (op << 8) | (info << 12)


def push(off: int, reg: str) -> List[int]:
    return [code(off, 0, REG[reg])]


def alloc_small(off: int, size: int) -> List[int]:
    assert 8 <= size <= 128 and size % 8 == 0
    return [code(off, 2, size // 8 - 1)]


def alloc_large(off: int, size: int, far: bool = False) -> List[int]:
    if not far:
        return [code(off, 1, 0), size // 8]
    return [code(off, 1, 1), size & 0xFFFF, size >> 16]


def set_fpreg(off: int) -> List[int]:
    return [code(off, 3, 0)]


def save_nonvol(off: int, reg: str, offset: int, far: bool = False) -> List[int]:
    if not far:
        return [code(off, 4, REG[reg]), offset // 8]
    return [code(off, 5, REG[reg]), offset & 0xFFFF, offset >> 16]


def save_xmm(off: int, xmm: int, offset: int, far: bool = False) -> List[int]:
    if not far:
        return [code(off, 8, xmm), offset // 16]
    return [code(off, 9, xmm), offset & 0xFFFF, offset >> 16]


def machframe(off: int, errcode: bool) -> List[int]:
    return [code(off, 10, 1 if errcode else 0)]


def epilog(byte: int, info: int) -> List[int]:
    return [code(byte, 6, info)]


def unwind_info(slots: Sequence[int], prolog: int, *, version: int = 1, flags: int = 0, frame_reg: str = "",
                frame_off: int = 0, chained: Optional[Tuple[int, int, int]] = None,
                handler: Optional[int] = None) -> bytes:
    fr = REG[frame_reg] if frame_reg else 0
    out = bytearray(struct.pack("<BBBB", version | (flags << 3), prolog, len(slots), fr | ((frame_off // 16) << 4)))
    for s in slots:
        out += struct.pack("<H", s)
    if len(slots) % 2:
        out += b"\0\0"
    if chained is not None:
        out += struct.pack("<III", *chained)
    elif handler is not None:
        out += struct.pack("<I", handler) + b"\0" * 4
    return bytes(out)


class SynthPE:
    """Collects functions, code bytes and exports; ``build()`` returns the PE bytes."""

    def __init__(self, timestamp: int = 0x5F000000) -> None:
        self.functions: List[Tuple[int, int, object]] = []     # (begin, end, unwind bytes | raw rva)
        self.code: Dict[int, bytes] = {}
        self.exports: List[Tuple[int, str]] = []
        self.timestamp = timestamp
        self.rsds: Optional[Tuple[bytes, int, str]] = None

    def func(self, begin: int, end: int, info) -> "SynthPE":
        self.functions.append((begin, end, info))
        return self

    def put(self, rva: int, data: bytes) -> "SynthPE":
        self.code[rva] = data
        return self

    def build(self) -> bytes:
        img = bytearray(SIZE)
        # code: default int3 filler
        img[TEXT:RDATA] = b"\xCC" * (RDATA - TEXT)
        for rva, data in self.code.items():
            img[rva:rva + len(data)] = data
        # unwind infos
        x = RDATA
        entries = []
        for begin, end, info in self.functions:
            if isinstance(info, int):
                entries.append((begin, end, info))
                continue
            x = (x + 3) & ~3
            img[x:x + len(info)] = info
            entries.append((begin, end, x))
            x += len(info)
        entries.sort()
        for i, e in enumerate(entries):
            struct.pack_into("<III", img, PDATA + 12 * i, *e)
        pdata_size = 12 * len(entries)
        # exports
        exp_rva = exp_size = 0
        if self.exports:
            x = (x + 15) & ~15
            exp_rva = x
            n = len(self.exports)
            names = sorted(self.exports, key=lambda e: e[1])
            afunc, anames, aords = exp_rva + 40, exp_rva + 40 + 4 * n, exp_rva + 40 + 8 * n
            strs = aords + 2 * n
            struct.pack_into("<IIHHIIIIIII", img, exp_rva, 0, 0, 0, 0, 0, 1, n, n, afunc, anames, aords)
            for i, (rva, name) in enumerate(names):
                struct.pack_into("<I", img, afunc + 4 * i, rva)
                struct.pack_into("<I", img, anames + 4 * i, strs)
                struct.pack_into("<H", img, aords + 2 * i, i)
                img[strs:strs + len(name) + 1] = name.encode() + b"\0"
                strs += len(name) + 1
            exp_size = strs - exp_rva
            x = strs
        dbg_rva = 0
        if self.rsds is not None:
            x = (x + 15) & ~15
            guid, age, name = self.rsds
            rec = b"RSDS" + guid + struct.pack("<I", age) + name.encode() + b"\0"
            dbg_rva = x
            struct.pack_into("<IIHHIIII", img, x, 0, self.timestamp, 0, 0, 2, len(rec), x + 28, x + 28)
            img[x + 28:x + 28 + len(rec)] = rec
            x += 28 + len(rec)
        assert x < PDATA
        # headers
        img[0:2] = b"MZ"
        struct.pack_into("<I", img, 0x3C, 0x80)
        img[0x80:0x84] = b"PE\0\0"
        struct.pack_into("<HHIIIHH", img, 0x84, 0x8664, 3, self.timestamp, 0, 0, 0xF0, 0x22)
        opt = 0x98
        struct.pack_into("<H", img, opt, 0x20B)
        struct.pack_into("<I", img, opt + 16, TEXT)                      # entry point
        struct.pack_into("<Q", img, opt + 24, 0x140000000)               # image base
        struct.pack_into("<II", img, opt + 32, 0x1000, 0x200)            # alignments
        struct.pack_into("<III", img, opt + 56, SIZE, 0x400, 0)          # SizeOfImage, SizeOfHeaders, CheckSum
        struct.pack_into("<HH", img, opt + 68, 1, 0)
        struct.pack_into("<I", img, opt + 108, 16)
        dirs = opt + 112
        struct.pack_into("<II", img, dirs + 0 * 8, exp_rva, exp_size)
        struct.pack_into("<II", img, dirs + 3 * 8, PDATA, pdata_size)
        if dbg_rva:
            struct.pack_into("<II", img, dirs + 6 * 8, dbg_rva, 28)
        sec = opt + 0xF0
        for i, (name, rva, size, vsize, chars) in enumerate((
                (b".text", TEXT, RDATA - TEXT, RDATA - TEXT, 0x60000020),
                (b".rdata", RDATA, PDATA - RDATA, PDATA - RDATA, 0x40000040),
                (b".pdata", PDATA, SIZE - PDATA, max(pdata_size, 12), 0x40000040))):
            struct.pack_into("<8sIIIIIIHHI", img, sec + 40 * i, name, vsize, rva, size, rva, 0, 0, 0, 0, chars)
        return bytes(img)


class FakeMemory:
    """Sparse virtual memory for tests: regions of bytes; reads outside raise MissingPageError."""

    def __init__(self, regions: Iterable[Tuple[int, bytes]] = ()) -> None:
        self.regions: List[Tuple[int, bytearray]] = [(va, bytearray(b)) for va, b in regions]
        self.reads = 0
        self.bytes = 0

    def add(self, va: int, data: bytes) -> None:
        self.regions.append((va, bytearray(data)))

    def q(self, va: int, value: int) -> None:
        self.write(va, struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF))

    def write(self, va: int, data: bytes) -> None:
        for base, buf in self.regions:
            if base <= va and va + len(data) <= base + len(buf):
                buf[va - base:va - base + len(data)] = data
                return
        raise AssertionError(f"write outside regions at {va:#x}")

    def read_virtual(self, va: int, size: int) -> bytes:
        self.reads += 1
        self.bytes += size
        for base, buf in self.regions:
            if base <= va and va + size <= base + len(buf):
                return bytes(buf[va - base:va - base + size])
        raise MissingPageError(f"{va:#x} not mapped", address=va)
