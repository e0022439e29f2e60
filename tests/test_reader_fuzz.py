"""Bad input is normal input: truncated and mutated dumps raise only dumpkit errors, quickly,
with bounded memory."""
from __future__ import annotations

import resource
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dumpkit
from dumpkit.errors import DumpError
from fixtures import factory

from ._mutate import overwrite, poke_u32

KINDS = ["full", "kernel", "bitmap_full", "bitmap_kernel", "triage"]
_CACHE: dict = {}


def _base(kind: str) -> bytes:
    if kind not in _CACHE:
        _CACHE[kind] = factory.make_basic_dump(None, kind).data
    return _CACHE[kind]


def exercise(data: bytes) -> None:
    """Open and touch everything a user would; only DumpError may escape."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            d = dumpkit.open(data)
        except DumpError:
            return
        with d:
            d.info()
            repr(d)
            _ = d.bugcheck.name
            try:
                mods = d.modules
                for m in list(mods)[:50]:
                    mods.find(m.base)
                list(d.unloaded_modules)
            except DumpError:
                pass
            try:
                _ = d.contexts
            except DumpError:
                pass
            ctx_sp = d.header.context_record[0x98:0xA0]
            for va in (int.from_bytes(ctx_sp, "little"), d.header.kd_debugger_data_block or 0,
                       d.header.ps_loaded_module_list or 0, 0xFFFFF80000000000):
                try:
                    d.read_virtual(va, 0x40)
                except DumpError:
                    pass
            if d.physical is not None:
                n = 0
                for _pa, _mv in d.iter_physical_runs():
                    n += 1
                    if n > 64:
                        break
                try:
                    d.read_physical(0x1000, 0x2000)
                except DumpError:
                    pass


FUZZ = settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True)


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(cut=st.integers(min_value=0, max_value=1 << 22))
def test_truncation(kind, cut):
    data = _base(kind)
    exercise(data[: cut % (len(data) + 1)])


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(edits=st.lists(st.tuples(st.integers(min_value=0, max_value=0x3000), st.binary(min_size=1, max_size=8)),
                      min_size=1, max_size=12))
def test_mutation_of_header_and_tables(kind, edits):
    exercise(overwrite(_base(kind), edits))


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(offs=st.lists(st.integers(min_value=0, max_value=1 << 30), min_size=1, max_size=16),
       value=st.sampled_from([0, 0xFFFFFFFF, 0x7FFFFFFF, 0x45474150, 0x2000, 0x10000]))
def test_mutation_anywhere(kind, offs, value):
    exercise(poke_u32(_base(kind), offs, value))


def test_memory_stays_bounded_on_hostile_counts():
    """Huge counts in a header must not turn into huge allocations."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for kind in KINDS:
        data = bytearray(_base(kind))
        for off in (0x88, 0x90, 0x2028, 0x2030, 0x2010, 0x2034, 0x207C, 0x2014):
            data[off:off + 4] = b"\xff\xff\xff\x7f"
        exercise(bytes(data))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200


def test_real_triage_mutations():
    """A few deterministic corruptions of the real dump's tables."""
    from .conftest import shared_path
    real = shared_path("dumps", "triage_x64.dmp").read_bytes()
    for off in (0x2004, 0x2030, 0x2034, 0x2038, 0x2018, 0x2078, 0x207C, 0x10828, 0x15D18):
        for value in (0, 0xFFFFFFFF, 0x7FFFFFFF):
            data = bytearray(real)
            data[off:off + 4] = value.to_bytes(4, "little")
            exercise(bytes(data))
    # a looping or absurd driver list / name
    data = bytearray(real)
    data[0x10828:0x1082C] = (0x10828).to_bytes(4, "little")   # first name points at the entry itself
    exercise(bytes(data))
