"""Start-up cost (issue 12): heavy modules are imported only by the paths that need them,
the shipped knowledge base is built per entry, and the call check that replaced capstone
on the stack-walk path agrees with capstone."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from dumpkit.analysis import kb as kbmod
from dumpkit.analysis.kb import KnowledgeBase
from dumpkit.unwind.walker import ends_with_call

ROOT = Path(__file__).resolve().parent.parent


def _modules_after(code: str, tmp_path: Path) -> set:
    # the child measures dumpkit alone: without the coverage tool that a CI run with --cov starts in subprocesses
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_PROCESS")}
    env["DUMPKIT_CACHE"] = str(tmp_path / "cache")
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\n"
                          "print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=120)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


HEAVY = ("numpy", "construct", "urllib.request", "http.client", "ssl", "capstone", "tomllib")


def test_open_and_name_the_bugcheck_imports_nothing_heavy(real_triage, tmp_path):
    mods = _modules_after(f"import dumpkit\nd = dumpkit.open({str(real_triage)!r})\n"
                          "assert d.bugcheck.name == 'SYSTEM_THREAD_EXCEPTION_NOT_HANDLED_M'\n"
                          "d.modules; d.contexts", tmp_path)
    assert not [m for m in HEAVY if m in mods]


def test_analyze_a_triage_dump_needs_neither_numpy_nor_the_http_client(real_triage, tmp_path):
    code = f"import dumpkit\na = dumpkit.analyze({str(real_triage)!r}, offline=True)\nassert a.bugcheck"
    _modules_after(code, tmp_path)                      # first run: fills the KB index in tmp
    mods = _modules_after(code, tmp_path)
    # capstone stays: the fault explanation decodes the faulting instruction with it
    assert not [m for m in ("numpy", "construct", "urllib.request", "http.client", "ssl", "tomllib")
                if m in mods]


def test_bitmap_dump_still_loads_numpy_when_it_needs_it(tmp_path):
    from fixtures.factory import write_sparse_bitmap_dump
    import numpy as np
    p = tmp_path / "b.dmp"
    write_sparse_bitmap_dump(p, 4096, np.arange(0, 64, dtype=np.int64))
    mods = _modules_after(f"import dumpkit\nd = dumpkit.open({str(p)!r})\nassert d.physical.page_count == 64",
                          tmp_path)
    assert "numpy" in mods


# ------------------------------------------------------------------ knowledge base built per entry
def test_naming_one_bugcheck_builds_one_entry():
    kb = KnowledgeBase.load(reload=True)
    assert kb.bugcheck(0x1000007E).name == "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED_M"
    built = kb.bugchecks._done                      # type: ignore[attr-defined]
    assert 0 < len(built) <= 2 < len(kb.bugchecks)
    assert callable(kb._modules)                    # modules.toml not read yet
    assert kb.module("ntoskrnl.exe").category == "OS core"
    KnowledgeBase.load(reload=True)


def test_kb_toml_index_is_used_and_survives_a_bad_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DUMPKIT_CACHE", str(tmp_path))
    path = kbmod.kb_file("triage.toml")
    first = kbmod._read_toml(path)
    files = list((tmp_path / "kb").glob("triage-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text()) == first
    files[0].write_text("{not json")
    assert kbmod._read_toml(path) == first           # a broken index is re-parsed, not trusted
    monkeypatch.setenv("DUMPKIT_CACHE", "off")
    assert kbmod._read_toml(path) == first


# ------------------------------------------------------------------ call check against capstone
_CS = []


def _capstone_says_call(code: bytes, ra: int) -> bool:
    """The walker's check as it was before this change: every candidate decoded by capstone."""
    if not _CS:
        from capstone import CS_ARCH_X86, CS_MODE_64, Cs
        _CS.append(Cs(CS_ARCH_X86, CS_MODE_64))
    cs = _CS[0]
    n = len(code)
    if n >= 5 and code[n - 5] == 0xE8:
        return True
    for length in range(2, 8):                      # the candidates the walker has always tried
        if length > n:
            continue
        b0 = code[n - length]
        if b0 != 0xFF and not (0x40 <= b0 <= 0x4F or b0 in (0x2E, 0x3E, 0x26, 0x64, 0x65, 0x36, 0xF2)):
            continue
        for insn in cs.disasm(code[n - length:], ra - length, 1):
            if insn.size == length and insn.mnemonic == "call":
                return True
    return False


def test_call_check_agrees_with_capstone():
    rng = random.Random(12)
    cases = []
    for rex in [b""] + [bytes([r]) for r in range(0x40, 0x50, 3)]:
        for modrm in range(256):
            sibs = [0x24, 0x25, 0x65, 0xE5] if (modrm & 7) == 4 and modrm >> 6 != 3 else [None]
            for sib in sibs:
                body = rex + b"\xff" + bytes([modrm]) + (bytes([sib]) if sib is not None else b"")
                for tail in range(5):
                    code = bytes(rng.randrange(256) for _ in range(8)) + body + \
                        bytes(rng.randrange(256) for _ in range(tail))
                    cases.append(code[-7:])
    cases += [bytes(rng.randrange(256) for _ in range(rng.randrange(2, 9))) for _ in range(3000)]
    bad = [c.hex() for c in cases if ends_with_call(c, 0x401000) != _capstone_says_call(c, 0x401000)]
    assert not bad[:5], f"{len(bad)} of {len(cases)} disagree"


@pytest.mark.parametrize("hexcode", ["2eff10", "3effd0", "64ff1425" "00000000"])
def test_prefixed_calls_still_go_to_capstone(hexcode):
    code = bytes.fromhex(hexcode)
    assert ends_with_call(code, 0x1000) == _capstone_says_call(code, 0x1000)
