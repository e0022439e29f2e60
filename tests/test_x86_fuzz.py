"""Bad input is normal input, 32-bit edition: truncated and mutated PAGEDUMP files, CONTEXT and
KTRAP_FRAME records, page tables and frame-data programs raise only DumpErrors (or warn),
quickly, with bounded memory."""
from __future__ import annotations

import os
import resource
import struct
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dumpkit
from dumpkit.arch.x86.context import (context_from_bytes32, context_from_trap_frame32, looks_like_context32,
                                      looks_like_trap_frame32)
from dumpkit.arch.x86.fpo import FrameDataTable, evaluate_program, parse_fpo_stream, parse_framedata_stream
from dumpkit.arch.x86.modules import triage_modules32, walk_loaded_modules32
from dumpkit.arch.x86.opener import open_pagedump
from dumpkit.arch.x86.walker import walk_stack32
from dumpkit.errors import DumpError
from dumpkit.io import Source
from fixtures.factory32 import (Driver32, Header32, Triage32, X86Regs, make_basic_dump32, write_triage_dump32)

from ._mutate import overwrite, poke_u32

KINDS = ["full", "bitmap", "summary", "full_nopae", "triage"]
MUTATE = ["full", "summary", "triage"]   # the bitmap and non-PAE bodies share their tables with these
_CACHE: dict = {}


def _base(kind: str) -> bytes:
    if kind not in _CACHE:
        if kind == "triage":
            stack = struct.pack("<64I", *([0x8F801010, 0x82401234] * 32))
            spec = Triage32(Header32(context=X86Regs(eip=0x8F801002, esp=0x8B7FFE00, ebp=0x8B7FFE40)),
                            call_stack=stack, top_of_stack=0x8B7FFE00,
                            drivers=[Driver32("ntkrnlpa.exe", 0x82400000, 0x400000),
                                     Driver32("drv32.sys", 0x8F800000, 0x5000)],
                            unloaded=[("old.sys", 0x8F700000, 0x8F710000)],
                            data_blocks=[(0x8F801000, b"\x90" * 0x100)])
            _CACHE[kind] = write_triage_dump32(None, spec).data
        elif kind == "full_nopae":
            _CACHE[kind] = make_basic_dump32("full", pae=False).data
        else:
            _CACHE[kind] = make_basic_dump32(kind).data
    return _CACHE[kind]


def exercise32(data: bytes) -> None:
    """Open and touch what a user would; only DumpError may escape."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parts = open_pagedump(Source.from_bytes(data))
        except DumpError:
            return
        h = parts.header
        h.to_json()
        try:
            if parts.triage is not None:
                mods, unl = triage_modules32(parts.triage)
            else:
                mods = walk_loaded_modules32(parts.read_virtual, h.ps_loaded_module_list, h.build, lambda w: None)
            ctx = context_from_bytes32(h.context_record, "header")
            walk_stack32(parts, ctx, mods, max_frames=64, read_budget=1 << 20)
        except DumpError:
            pass
        for va in (h.kd_debugger_data_block or 0, h.ps_loaded_module_list or 0, 0x82001234, 0x8B7FFE00):
            try:
                parts.read_virtual(va, 0x40)
            except DumpError:
                pass


FUZZ = settings(max_examples=int(os.environ.get("DUMPKIT_FUZZ_EXAMPLES", "12")), deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(cut=st.integers(min_value=0, max_value=1 << 20))
def test_truncation32(kind, cut):
    data = _base(kind)
    exercise32(data[: cut % (len(data) + 1)])


@pytest.mark.parametrize("kind", MUTATE)
@FUZZ
@given(edits=st.lists(st.tuples(st.integers(min_value=0, max_value=0x2000), st.binary(min_size=1, max_size=8)),
                      min_size=1, max_size=12))
def test_mutation_of_header_and_tables32(kind, edits):
    exercise32(overwrite(_base(kind), edits))


@pytest.mark.parametrize("kind", MUTATE + ["full_nopae"])
@FUZZ
@given(offs=st.lists(st.integers(min_value=0, max_value=1 << 30), min_size=1, max_size=16),
       value=st.sampled_from([0, 0xFFFFFFFF, 0x7FFFFFFF, 0x45474150, 0x1000, 0x8B7FFE00, 0x82000000]))
def test_mutation_anywhere32(kind, offs, value):
    """Anywhere includes the page tables and the stack: loops, junk PTEs and junk frames."""
    exercise32(poke_u32(_base(kind), offs, value))


@FUZZ
@given(raw=st.binary(min_size=0, max_size=0x300))
def test_context_and_trap_frame_decoders(raw):
    for fn in (lambda: context_from_bytes32(raw), lambda: context_from_trap_frame32(raw, 0x8B7FF000),
               lambda: context_from_trap_frame32(raw)):
        try:
            ctx = fn()
            ctx.render()
            ctx.to_json()
        except DumpError:
            pass
    looks_like_context32(raw)
    looks_like_trap_frame32(raw)


@FUZZ
@given(fpo=st.binary(max_size=0x200), fd=st.binary(max_size=0x200), rva=st.integers(0, 0x10000))
def test_fpo_streams(fpo, fd, rva):
    t = FrameDataTable(parse_fpo_stream(fpo), parse_framedata_stream(fd, lambda off: "$T0 .raSearch = $eip $T0 ^ ="))
    t.lookup(rva)


@FUZZ
@given(prog=st.lists(st.sampled_from(["$T0", "$eip", "$esp", "$ebp", ".raSearch", "=", "^", "+", "-", "*", "/",
                                      "%", "@", "4", "0", "0x10", "junk", "$T1"]), max_size=300))
def test_frame_data_programs(prog):
    env = {"$esp": 0x8B7FFE00, "$ebp": 0x8B7FFE40, "$eip": 0x8F801002, ".raSearch": 0x8B7FFE10}
    try:
        evaluate_program(" ".join(prog), env, lambda a: 0x1234 if a & 3 == 0 else None)
    except DumpError:
        pass


def test_page_table_loops_and_self_maps():
    """A page directory that maps itself (as Windows' self-map does) and PTEs pointing at page
    tables or at nothing: translation stays bounded and answers or raises a DumpError."""
    for kind in ("full", "full_nopae"):
        d = make_basic_dump32("full", pae=(kind == "full"))
        parts = open_pagedump(Source.from_bytes(d.data))
        sp = parts.address_space()
        for va in range(0xC0000000, 0xC0400000, 0x40000):
            try:
                sp.read(va, 0x10)
            except DumpError:
                pass


def test_memory_stays_bounded_on_hostile_counts32():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for kind in KINDS:
        data = bytearray(_base(kind))
        for off in (0x64, 0x68, 0x1030, 0x1034, 0x1010, 0x1014, 0x1028, 0x1060, 0x1064, 0x1018):
            data[off:off + 4] = b"\xff\xff\xff\x7f"
        exercise32(bytes(data))
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 200


def exercise_public(data: bytes) -> None:
    """dumpkit.open and what `dumpkit info/modules/stack` touch; only DumpError may escape."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            d = dumpkit.open(data)
        except DumpError:
            return
        with d:
            d.info()
            repr(d)
            for what in (lambda: list(d.modules), lambda: d.contexts, lambda: d.stack(max_frames=32, offline=True)):
                try:
                    what()
                except DumpError:
                    pass


@pytest.mark.parametrize("kind", MUTATE)
@FUZZ
@given(offs=st.lists(st.integers(min_value=0, max_value=1 << 30), min_size=1, max_size=8),
       value=st.sampled_from([0, 0xFFFFFFFF, 0x45474150, 0x1000, 0x8B7FFE00, 0x82000000]))
def test_public_api_on_mutated_32bit_dumps(kind, offs, value):
    exercise_public(poke_u32(_base(kind), offs, value))


def test_dumpkit_open_on_mutated_32bit_files():
    """The public entry point on a few fixed corruptions: only DumpErrors."""
    for kind in KINDS:
        data = bytearray(_base(kind))
        data[0xF88:0xF8C] = b"\xff\xff\xff\xff"
        for blob in (bytes(data), _base(kind)[:0x1100]):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    dumpkit.open(blob).close()
            except DumpError:
                pass
