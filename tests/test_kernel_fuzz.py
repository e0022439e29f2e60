"""Garbage in the kernel structures (module list, KDBG, EPROCESS/ETHREAD/KPRCB, stack) gives
DumpErrors or warnings only, in bounded time, never a raw exception or a hang."""
from __future__ import annotations

import time
import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dumpkit
from dumpkit.errors import DumpError
from fixtures import factory as F
from fixtures import kernel_structs as K

_CACHE: dict = {}
SETTINGS = dict(max_examples=60, deadline=4000, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True)


def _base(family="0xD1"):
    if family not in _CACHE:
        _CACHE[family] = K.make_kernel_dump(None, "full", family=family).data
    return _CACHE[family]


def _regions(data: bytes) -> dict:
    """File offsets of the structures to damage (found by their contents, not by dumpkit)."""
    kdbg = data.find(b"KDBG", 0x2000) - 0x10
    heap = data.find("\\SystemRoot\\system32\\ntoskrnl.exe".encode("utf-16-le"), 0x2000) & ~0xFFF
    name = data.find(b"notmyfault64.e\0", 0x2000)
    return {"kdbg": kdbg, "heap": heap, "eprocess": name - 0x5A8}


def exercise(data: bytes) -> None:
    t0 = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            d = dumpkit.open(data)
        except DumpError:
            return
        for f in (lambda: list(d.modules), lambda: list(d.unloaded_modules), lambda: d.contexts,
                  lambda: d.thread, lambda: d.exception_record, lambda: d.summary().to_json(),
                  lambda: d.find_module(K.FAULT_IP), lambda: d.kdbg):
            try:
                f()
            except DumpError:
                pass
    assert time.monotonic() - t0 < 3.0


patches = st.lists(st.tuples(st.integers(0, 0xFF8), st.binary(min_size=1, max_size=16)), min_size=1, max_size=24)


@settings(**SETTINGS)
@given(which=st.sampled_from(["kdbg", "heap", "eprocess"]), edits=patches,
       family=st.sampled_from(["0xD1", "0x7E", "0x1E"]))
def test_damaged_kernel_structures(which, edits, family):
    data = bytearray(_base(family))
    start = _regions(bytes(data))[which]
    assert start > 0x2000
    for off, raw in edits:
        p = start + off
        data[p:p + len(raw)] = raw
    exercise(bytes(data))


@settings(**SETTINGS)
@given(words=st.lists(st.integers(0, 2 ** 64 - 1), min_size=4, max_size=64))
def test_pointer_soup_in_the_module_list(words):
    """Plausible-looking kernel pointers everywhere in the heap page (loops, self links, wild VAs)."""
    data = bytearray(_base())
    start = _regions(bytes(data))["heap"]
    for i, w in enumerate(words):
        data[start + 8 * i * 7 % 0xFF8:start + 8 * i * 7 % 0xFF8 + 8] = w.to_bytes(8, "little")
    exercise(bytes(data))


@settings(**SETTINGS)
@given(process=st.binary(max_size=0xC00), thread=st.binary(max_size=0xA00), prcb=st.binary(max_size=0x200),
       kdbg=st.one_of(st.none(), st.binary(min_size=0x18, max_size=0x400)),
       code=st.sampled_from([0x7E, 0x1E, 0xD1, 0x50, 0x3B, 0x139]),
       params=st.tuples(*[st.integers(0, 2 ** 64 - 1)] * 4))
def test_garbage_triage_copies(process, thread, prcb, kdbg, code, params):
    if kdbg is not None:
        kdbg = kdbg[:0x10] + b"KDBG" + len(kdbg).to_bytes(4, "little") + kdbg[0x18:]
    stack = b"".join(p.to_bytes(8, "little") for p in params) * 64
    spec = F.TriageSpec(header=F.HeaderFields(bugcheck_code=code, bugcheck_parameters=params),
                        process=process or None, thread=thread or None, prcb=prcb or None,
                        debugger_data=kdbg, call_stack=stack, top_of_stack=0xFFFF850429890000)
    exercise(F.write_triage_dump(None, spec).data)
