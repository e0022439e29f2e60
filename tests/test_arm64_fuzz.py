"""Hypothesis fuzzing of the ARM64 parsers: contexts, unwind codes, packed words, .xdata records,
page-table walks and stack walks.  Bad input gives a DumpError (UnwindError, MemoryReadError,
...) or a degraded answer, never another exception and never a hang."""
from __future__ import annotations

import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dumpkit.arch.arm64.frames import Arm64Context, context_from_bytes, looks_like_context
from dumpkit.arch.arm64.paging import Arm64Translator
from dumpkit.arch.arm64.unwind import decode_codes, packed_ops, parse_record, resolve_save_next, virtual_unwind
from dumpkit.errors import DumpError

from ._mutate import poke_u32

FAST = settings(max_examples=int(os.environ.get("DUMPKIT_FUZZ_EXAMPLES", "40")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@FAST
@given(st.binary(max_size=0x400))
def test_context_bytes(data):
    try:
        ctx = context_from_bytes(data)
    except DumpError:
        assert len(data) < 0x110
        return
    assert isinstance(ctx, Arm64Context) and set(ctx.regs) >= {"pc", "sp", "fp", "lr", "x0"}
    looks_like_context(data)


@FAST
@given(st.binary(max_size=64))
def test_unwind_codes(data):
    try:
        ops, idx = decode_codes(data)
        resolve_save_next(ops)
    except DumpError:
        return
    assert len(ops) == len(idx) <= len(data)


@FAST
@given(st.integers(0, 0xFFFFFFFF))
def test_packed_words(word):
    try:
        ops, fields = packed_ops(word | 1)
    except DumpError:
        return
    assert len(ops) <= 32 and fields["FrameSize"] == (word >> 23) * 16


class _Image:
    """A fake image whose .xdata bytes come from hypothesis."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        self.size_of_image = 0x10000
        self.runtime_functions = [1]

    def read_rva(self, rva: int, size: int) -> bytes:
        from dumpkit.errors import ImageError
        if rva < 0x100 or rva - 0x100 + size > len(self.blob):
            raise ImageError("outside", offset=rva)
        return self.blob[rva - 0x100:rva - 0x100 + size]

    def function_for(self, rva: int):
        from dumpkit.pe.unwindinfo import RuntimeFunction
        return RuntimeFunction(0x1000, 0x2000, self.word) if 0x1000 <= rva < 0x2000 else None


@FAST
@given(st.binary(min_size=4, max_size=96), st.integers(0, 0x1000), st.booleans())
def test_xdata_records_and_unwinding(blob, pc_off, exact):
    img = _Image(blob)
    img.word = 0x100
    try:
        parse_record(img, 0x1000, 0x100)
    except DumpError:
        pass
    regs = {"pc": 0x1000 + pc_off, "sp": 0x8000, "fp": 0x8100, "lr": 0x1234}

    def read(va, size):
        return bytes(size)
    try:
        step = virtual_unwind(img, 0, regs, read, exact=exact)
    except DumpError:
        return
    if step is not None:
        assert "pc" in step.regs and "sp" in step.regs


class _Phys:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob

        class _S:
            path = "<fuzz>"
        self.source = _S()

    def read_u64(self, pa: int) -> int:
        from dumpkit.errors import MissingPageError
        off = pa & 0xFFF8
        if pa >> 16 or off + 8 > len(self.blob):
            raise MissingPageError("not in the dump", address=pa)
        return struct.unpack_from("<Q", self.blob, off)[0]

    def read(self, pa: int, size: int, zero_fill: bool = False) -> bytes:
        return bytes(size)


@FAST
@given(st.binary(min_size=8, max_size=0x2000), st.integers(0, (1 << 64) - 1))
def test_page_table_walks(blob, va):
    t = Arm64Translator(_Phys(blob), 0)
    try:
        t.translate(va)
        t.read(va, 16)
    except DumpError:
        pass


@settings(max_examples=int(os.environ.get("DUMPKIT_FUZZ_EXAMPLES", "40")) // 4 + 1, deadline=None,
          suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(st.binary(min_size=0x100, max_size=0x800), st.integers(0, 0x7F))
def test_stack_walks_end(stack, sp_slot):
    from dumpkit.arch import by_name
    from dumpkit.model import Module, ModuleList
    from dumpkit.unwind.walker import walk_stack
    base = 0xFFFFE00000000000

    class R:
        def read_virtual(self, va, size):
            off = va - base
            if 0 <= off and off + size <= len(stack):
                return stack[off:off + size]
            raise DumpError("outside")
    sp = base + 8 * (sp_slot % (len(stack) // 8))
    fp = struct.unpack_from("<Q", stack, 0)[0]
    ctx = Arm64Context({"pc": 0xFFFFF80000001000, "sp": sp, "fp": fp, "lr": fp ^ 0x55})
    mods = ModuleList([Module("nt.exe", 0xFFFFF80000000000, 0x100000)])
    frames = walk_stack(R(), ctx, mods, max_frames=64, arch=by_name("arm64"))
    assert 1 <= len(frames) <= 64


_ARM64_DUMP = {}


def _arm64_dump(kind: str) -> bytes:
    """The emulated ARM64 crash as a factory dump (built once per kind)."""
    if kind not in _ARM64_DUMP:
        pytest.importorskip("unicorn")
        from fixtures.emulate_arm64 import run
        from fixtures.factory_arm64 import write_emulated_dump
        import tempfile
        em = run()
        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/a.dmp"
            write_emulated_dump(path, em, kind=kind)
            with open(path, "rb") as f:
                _ARM64_DUMP[kind] = f.read()
    return _ARM64_DUMP[kind]


def _exercise(data: bytes) -> None:
    """dumpkit.open and what `dumpkit info/modules/stack/analyze` touch; only DumpError may escape."""
    import warnings

    import dumpkit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            d = dumpkit.open(data)
        except DumpError:
            return
        with d:
            d.info()
            repr(d)
            for what in (lambda: list(d.modules), lambda: d.contexts,
                         lambda: d.stack("exception" if "exception" in d.contexts else None, max_frames=32,
                                         offline=True)):
                try:
                    what()
                except DumpError:
                    pass


@pytest.mark.parametrize("kind", ["full", "bitmap"])
@settings(max_examples=int(os.environ.get("DUMPKIT_FUZZ_EXAMPLES", "40")) // 4 + 2, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], derandomize=True)
@given(offs=st.lists(st.integers(min_value=0, max_value=1 << 30), min_size=1, max_size=8),
       value=st.sampled_from([0, 0xFFFFFFFF, 0x45474150, 0x1000, 0x00400007, 0xE4E4E4E4]))
def test_public_api_on_mutated_arm64_dumps(kind, offs, value):
    """Mutations anywhere in an ARM64 dump (header, context, page tables, .pdata/.xdata, stack)."""
    _exercise(poke_u32(_arm64_dump(kind), offs, value))


def test_mutated_arm64_unwind_data_and_page_tables():
    """Targeted corruption: every byte of the image's .pdata/.xdata and of the top-level table."""
    base = _arm64_dump("full")
    # the level-0 table (PA 0x100000, the first page the factory allocates), the image's .xdata
    # (RVA 0x2060 -> PA 0x103060) and .pdata (RVA 0x4000 -> PA 0x105000); a full dump stores PA
    # 0x100000 at file offset 0x2000
    for page_pa in (0x100000, 0x103000, 0x105000):
        for off in range(0, 0x100, 4):
            data = bytearray(base)
            fo = 0x2000 + page_pa - 0x100000 + off
            data[fo:fo + 4] = b"\xff\xff\xff\xff"
            _exercise(bytes(data))
