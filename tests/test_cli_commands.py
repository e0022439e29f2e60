"""The ``dumpkit`` command line, run as users run it (``python -m dumpkit`` in a subprocess),
on the committed fixture dumps, factory dumps and the real triage_x64.dmp.

The expected values come from outside the code under test: the compiler-built fixture drivers
(their PE files and the call chain written down from their sources), the fixture factory's
description of what it wrote, and triage_x64.expected.md.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, shared_path

FULL = ROOT / "fixtures" / "dumps" / "case2_mode0_full.dmp"
TRIAGE = ROOT / "fixtures" / "dumps" / "case2_mode0_triage.dmp"
DRIVERS = ROOT / "fixtures" / "drivers" / "bin"
HEX = re.compile(r"^0x[0-9a-f]+$")
K_HEADER = " # Child-SP          RetAddr               Call Site"


def dk(*args, input: bytes | None = None, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``python -m dumpkit ARGS`` from the repository root; stdout/stderr as text."""
    e = dict(os.environ, DUMPKIT_OFFLINE="1", PYTHONIOENCODING="utf-8")
    e.pop("_NT_SYMBOL_PATH", None)
    if env:
        e.update(env)
    p = subprocess.run([sys.executable, "-m", "dumpkit", *map(str, args)], cwd=ROOT, input=input,
                       capture_output=True, timeout=timeout, env=e)
    p.out = p.stdout.decode("utf-8", "replace")      # type: ignore[attr-defined]
    p.err = p.stderr.decode("utf-8")      # type: ignore[attr-defined]
    return p


def assert_clean_error(p, code: int) -> None:
    """Exit ``code``, one stderr line 'dumpkit: error: ...', no traceback."""
    assert p.returncode == code, (p.returncode, p.err)
    lines = [ln for ln in p.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("dumpkit: error: "), p.err
    assert "Traceback" not in p.err


def hex_fields(obj, path=""):
    """Every string that looks like a number in a JSON document (for the lowercase-hex rule)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from hex_fields(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from hex_fields(v, f"{path}[{i}]")
    elif isinstance(obj, str) and re.match(r"^0[xX][0-9a-fA-F]+$", obj):
        yield path, obj


def assert_lower_hex(doc) -> None:
    bad = [(p, v) for p, v in hex_fields(doc) if not HEX.match(v)]
    assert not bad, bad


@pytest.fixture(scope="module")
def basic(tmp_path_factory):
    """Factory dumps with known contents: full (1), bitmap kernel (6) and triage (4)."""
    from fixtures.factory import make_basic_dump
    d = tmp_path_factory.mktemp("cli")
    return {k: make_basic_dump(d / f"{k}.dmp", k) for k in ("full", "bitmap_kernel", "triage")}


def _pe_timestamp(path: Path) -> int:
    data = path.read_bytes()
    pe = int.from_bytes(data[0x3C:0x40], "little")
    assert data[pe:pe + 4] == b"PE\0\0"
    return int.from_bytes(data[pe + 8:pe + 12], "little")


# ------------------------------------------------------------------ front door
def test_help_version_and_usage_errors():
    p = dk("--help")
    assert p.returncode == 0
    for cmd in ("analyze", "info", "modules", "stack", "read", "scan", "symbols", "text"):
        assert re.search(rf"^\s+{cmd}\s", p.out, re.M), cmd
    p = dk("--version")
    assert p.returncode == 0 and p.out.startswith("dumpkit ")
    p = dk()
    assert p.returncode == 2 and "usage:" in p.err
    assert_clean_error(dk("frobnicate", FULL), 2)
    assert_clean_error(dk("info", FULL, "--bogus"), 2)
    assert_clean_error(dk("info"), 2)


# ------------------------------------------------------------------ info
def test_info_json_contract_on_factory_dump(basic):
    made = basic["full"]
    p = dk("info", made.path, "--json")
    assert p.returncode == 0, p.err
    doc = json.loads(p.out)
    for key in ("dump_type", "dump_type_code", "machine", "os_build", "processors", "crash_time", "bugcheck",
                "process_name", "uptime_seconds"):
        assert key in doc, key
    assert doc["dump_type"] == "full" and doc["dump_type_code"] == 1
    assert doc["processors"] == 2
    h = made.header
    assert doc["bugcheck"]["code"] == hex(h.bugcheck_code)
    assert doc["bugcheck"]["parameters"] == [hex(x) for x in h.bugcheck_parameters]
    assert doc["bugcheck"]["name"] == "DRIVER_IRQL_NOT_LESS_OR_EQUAL"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", doc["crash_time"])
    assert_lower_hex(doc)


def test_info_text_and_triage():
    p = dk("info", TRIAGE)
    assert p.returncode == 0, p.err
    assert "triage (DumpType 4)" in p.out
    assert "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED" in p.out
    assert re.search(r"Arg1\s+00000000c0000005", p.out)       # STATUS_ACCESS_VIOLATION, from the sources


# ------------------------------------------------------------------ modules
def test_modules_json_matches_the_fixture_images():
    from fixtures.emulate import IMAGES
    p = dk("modules", FULL, "--json")
    assert p.returncode == 0, p.err
    doc = json.loads(p.out)
    assert set(doc) >= {"modules", "unloaded"}
    mods = {m["name"].lower(): m for m in doc["modules"]}
    assert len(mods) == len(IMAGES)
    for name, base, _full in IMAGES:
        m = mods[name.lower()]
        assert set(m) >= {"name", "path", "base", "size", "timestamp", "checksum"}
        assert m["base"] == hex(base)
        assert int(m["timestamp"], 16) == _pe_timestamp(DRIVERS / name)
    assert_lower_hex(doc)
    # the text form: lm's header and WinDbg-style addresses
    p = dk("modules", FULL)
    assert p.out.splitlines()[0] == "start             end                 module name"
    assert "fffff804`1c7d0000" in p.out and "lwffilter" in p.out


def test_modules_real_triage():
    dmp = shared_path("dumps", "triage_x64.dmp")
    doc = json.loads(dk("modules", dmp, "--json").out)
    assert len(doc["modules"]) == 151
    by = {os.path.basename(m["name"].replace("\\", "/")).lower(): m for m in doc["modules"]}
    assert by["ntoskrnl.exe"]["base"] == "0xfffff8047ba00000" and by["ntoskrnl.exe"]["size"] == "0x1046000"
    assert by["amdppm.sys"]["base"] == "0xfffff8048b580000" and by["amdppm.sys"]["timestamp"] == "0xc9c03000"
    assert by["wdf01000.sys"]["size"] == "0xd1000"
    assert_lower_hex(doc)


# ------------------------------------------------------------------ stack
FRAME_KEYS = {"index", "instruction", "child_sp", "return_address", "module", "symbol", "offset", "trust"}


@pytest.mark.parametrize("dump", [FULL, TRIAGE], ids=["full", "triage"])
def test_stack_json_follows_the_source_call_chain(dump):
    from fixtures.emulate import EXPECTED_CHAINS, TRAP_FRAME_INDEX
    p = dk("stack", dump, "--context", "exception", "--symbol-path", DRIVERS, "--json")
    assert p.returncode == 0, p.err
    doc = json.loads(p.out)
    frames = doc["frames"]
    for f in frames:
        assert FRAME_KEYS <= set(f)
    assert_lower_hex(doc)
    got = [f"{f['module']}!{f['symbol']}" for f in frames]
    assert got == list(EXPECTED_CHAINS[0][TRAP_FRAME_INDEX:])
    assert [f["index"] for f in frames] == list(range(len(frames)))
    assert frames[0]["trust"] == "context"
    assert frames[-1]["return_address"] == "0x0"


def test_stack_text_is_windbg_k_layout():
    p = dk("stack", FULL, "-c", "exception", "-y", DRIVERS)
    assert p.returncode == 0, p.err
    lines = p.out.splitlines()
    assert lines[0] == K_HEADER
    row = re.compile(r"^[0-9a-f]{2} [0-9a-f]{8}`[0-9a-f]{8} [0-9a-f]{8}`[0-9a-f]{8}     \S+$")
    assert all(row.match(ln) for ln in lines[1:]), lines
    assert lines[1].endswith("ndislike!ndisValidateFilterBlock+0x49")


def test_stack_default_context_and_bad_contexts():
    p = dk("stack", FULL, "-y", DRIVERS)        # like k right after the bugcheck: KeBugCheckEx first
    assert p.returncode == 0, p.err
    assert p.out.splitlines()[1].endswith("ntlike!KeBugCheckEx")
    p = dk("stack", FULL, "--context", "nosuch")
    assert_clean_error(p, 2)
    assert "available: " in p.err and "exception" in p.err
    assert_clean_error(dk("stack", FULL, "--context", "0x1234"), 3)       # an address the dump cannot read


def test_stack_real_triage_from_the_exception():
    dmp, store = shared_path("dumps", "triage_x64.dmp"), shared_path("symstore")
    expected = []          # frames 08..17 of triage_x64.expected.md: (instruction, child-sp, name)
    text = (dmp.parent / "triage_x64.expected.md").read_text()
    for m in re.finditer(r"^([0-9a-f]{2}) ([0-9a-f]{16}) ([0-9a-f]{16}) (\S+)", text, re.M):
        if 0x08 <= int(m.group(1), 16) <= 0x17:
            expected.append((int(m.group(2), 16), int(m.group(3), 16), m.group(4)))
    assert len(expected) == 16
    p = dk("stack", dmp, "--context", "exception", "--symbol-path", store, "--json")
    assert p.returncode == 0, p.err
    frames = json.loads(p.out)["frames"]
    for f, (ip, sp, name) in zip(frames, expected):
        assert int(f["instruction"], 16) == ip and int(f["child_sp"], 16) == sp
        if "!" in name:
            assert f"{f['module']}!{f['symbol']}+{f['offset']}" == name
    assert all(f["trust"] in ("context", "cfi") for f in frames[:16])


# ------------------------------------------------------------------ read
def _hexdump_bytes(text: str) -> bytes:
    out = bytearray()
    for line in text.splitlines():
        m = re.match(r"^[0-9a-f]{8}`[0-9a-f]{8}  ((?:[0-9a-f?]{2}[ -]){0,16})", line + " ")
        assert m, line
        out += bytes.fromhex(m.group(1).replace("-", " ").replace("??", ""))
    return bytes(out)


def test_read_virtual_equals_the_driver_file():
    image = (DRIVERS / "lwffilter.sys").read_bytes()
    p = dk("read", FULL, "lwffilter", "L200")
    assert p.returncode == 0, p.err
    assert p.out.splitlines()[0].startswith("fffff804`1c7d0000  4d 5a ")
    assert _hexdump_bytes(p.out) == image[:0x200]
    # module+offset, an unaligned start, the WinDbg layout: '-' between the 8th and 9th byte
    p = dk("read", FULL, "lwffilter+0x3c", "0n10")
    line = p.out.splitlines()[0]
    assert line.startswith("fffff804`1c7d003c  ")
    assert _hexdump_bytes(p.out) == image[0x3C:0x46]
    p = dk("read", FULL, "lwffilter+40", "--raw", "L40")        # numbers are hex, as in WinDbg
    assert p.returncode == 0 and p.stdout == image[0x40:0x80]


def test_read_physical_and_missing_memory(basic):
    made = basic["full"]
    va = next(v for v, b in made.expected_bytes.items() if b == b"\x48\x8b\x01")
    pa = made.expected_translations[va]
    p = dk("read", made.path, hex(pa), "3", "--physical")
    assert p.returncode == 0, p.err
    assert _hexdump_bytes(p.out) == b"\x48\x8b\x01"
    assert p.out.startswith(f"{pa >> 32:08x}`{pa & 0xffffffff:08x}  48 8b 01")
    # a page that is mapped but not in the dump: one line, exit 1, hint --zero-fill
    miss = made.missing_vas[0]
    p = dk("read", made.path, hex(miss), "10")
    assert_clean_error(p, 1)
    assert "--zero-fill" in p.err
    p = dk("read", made.path, hex(miss), "10", "--zero-fill")
    assert p.returncode == 0 and _hexdump_bytes(p.out) == bytes(16)
    # a range that starts readable (a transition page) and runs into a paged-out one: '??', exit 1
    start = made.transition_vas[0] + 0xFF8
    assert start + 8 in made.paged_out_vas
    p = dk("read", made.path, hex(start), "10")
    assert p.returncode == 1, p.err
    first = p.out.splitlines()[0]
    assert first.endswith("?? ?? ?? ?? ?? ?? ?? ??  ........????????") and "incomplete" in p.err
    # physical on a triage dump: a property of the file, so bad input (3), not usage (2)
    assert_clean_error(dk("read", basic["triage"].path, "1000", "--physical"), 3)
    assert_clean_error(dk("read", FULL, "nosuchmodule"), 2)


# ------------------------------------------------------------------ scan
def test_scan_counts_match_the_factory(basic):
    for kind in ("full", "bitmap_kernel"):
        made = basic[kind]
        mem = made.memory
        pfns = mem.present_pfns()
        zero = sum(1 for pfn in pfns if not any(mem.page_bytes(pfn)))
        p = dk("scan", made.path, "--json")
        assert p.returncode == 0, p.err
        doc = json.loads(p.out)
        assert doc["pages"] == len(pfns) and doc["bytes"] == len(pfns) * 4096
        assert doc["zero_pages"] == zero
        assert doc["runs"] == len(mem.runs())
        assert doc["lowest_address"] == hex(pfns[0] << 12)
        assert doc["complete"] is True
        assert p.err == ""                      # a pipe: no progress bar
        assert_lower_hex(doc)
    p = dk("scan", FULL)
    assert p.returncode == 0 and "Present pages   41 " in p.out and "GB/s" in p.out
    p = dk("scan", TRIAGE)                      # no physical memory: the captured ranges instead
    assert p.returncode == 0 and "stack" in p.out


def test_scan_draws_a_progress_bar_on_a_terminal(basic):
    import pty
    master, slave = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "dumpkit", "scan", basic["full"].path], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=slave, timeout=60)
        os.close(slave)
        slave = -1
        err = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            err += chunk
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert p.returncode == 0
    assert b"\r" in err and b"[" in err and b"%" in err          # drawn, then erased
    assert b"Present pages" in p.stdout and b"\r" not in p.stdout


# ------------------------------------------------------------------ symbols
def test_symbols_report(basic):
    p = dk("symbols", FULL, "--symbol-path", DRIVERS, "--json")
    assert p.returncode == 0, p.err
    doc = json.loads(p.out)
    assert doc["symbol_path"] == str(DRIVERS)
    mods = {m["windbg_name"]: m for m in doc["modules"]}
    assert set(mods) == {"ntlike", "ndislike", "lwffilter"}
    for name, m in mods.items():
        assert m["symbols"] == "pdb"
        assert m["pdb"]["found"] and Path(m["pdb"]["path"]).name == f"{name}.pdb"
    assert doc["counts"] == {"pdb": 3}
    # without a symbol path only the images in the dump: exports or nothing, and the text says so
    p = dk("symbols", FULL, "--symbol-path", "", "--offline")
    assert p.returncode == 0, p.err
    assert "pdb /" not in p.out and "3 modules:" in p.out


def test_symbols_real_triage():
    dmp, store = shared_path("dumps", "triage_x64.dmp"), shared_path("symstore")
    doc = json.loads(dk("symbols", dmp, "-y", store, "--offline", "--json").out)
    mods = {m["windbg_name"].lower(): m for m in doc["modules"]}
    assert len(mods) == 151
    assert mods["amdppm"]["symbols"] == "pdb"
    assert mods["wdf01000"]["image"]["found"] and not mods["wdf01000"]["pdb"]["found"]
    assert mods["nt"]["symbols"] == "module"
