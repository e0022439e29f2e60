"""Every command over hostile files: the committed fuzz crashers and mutated fixture dumps
(issue 11: the CLI never prints "internal error").  In process and deterministic; each run must
end with a documented exit code (0, 1, 2 or 3), without "internal error" or a traceback.  The
whole sweep costs a few seconds of CPU (the suite budget is tight): the mutants are few and
chosen to reach different readers (header fields, the physical-memory description, the module
list, a cut file), not many random ones (the hypothesis tests and the fuzzer do that).
"""
from __future__ import annotations

import random
import time
from pathlib import Path

from dumpkit.cli import main

from ._mutate import overwrite, poke_u32

ROOT = Path(__file__).resolve().parent.parent
CRASHERS = sorted(p for p in (ROOT / "fuzz" / "crashers").glob("*/*") if p.is_file() and not p.name.startswith("."))
FULL = ROOT / "fixtures" / "samples" / "case2_lwfmgr.dmp"
TRIAGE = ROOT / "fixtures" / "dumps" / "case2_mode0_triage.dmp"


def _mutants():
    full, triage = FULL.read_bytes(), TRIAGE.read_bytes()
    rnd = random.Random(11)
    yield "full-cut-in-header", full[:0x700]
    yield "full-cut-in-memory", full[:len(full) // 2]
    yield "full-header-fields-ffffffff", poke_u32(full, [0x20, 0x28, 0x34, 0x38, 0x88, 0x8C], 0xFFFFFFFF)
    yield "full-pages-zeroed", overwrite(full, [(0x2000 + 0x1000 * i, bytes(0x1000)) for i in range(0, 40, 3)])
    yield "full-random-bytes", overwrite(full, [(rnd.randrange(len(full)), bytes([rnd.randrange(256)]) * 8)
                                                for _ in range(64)])
    yield "triage-header-fields-ffffffff", poke_u32(triage, [0x20, 0x28, 0x38, 0xF98, 0x1000, 0x1004, 0x1008], 0xFFFFFFFF)
    yield "triage-random-bytes", overwrite(triage, [(rnd.randrange(len(triage)), bytes([rnd.randrange(256)]) * 4)
                                                    for _ in range(64)])


DUMP_COMMANDS = [("info",), ("modules", "--json"), ("stack", "--offline"), ("read", "nt", "L40"),
                 ("read", "--physical", "1000", "L20"), ("scan", "--no-progress"), ("symbols", "--offline"),
                 ("analyze", "--offline", "--json")]


def _run(capsys, argv) -> int:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code in (0, 1, 2, 3), (argv, code, err)
    assert "internal error" not in err and "Traceback" not in err, (argv, err)
    assert "internal error" not in out, argv
    return code


def test_every_command_on_every_crasher_and_mutant(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DUMPKIT_OFFLINE", "1")
    monkeypatch.delenv("_NT_SYMBOL_PATH", raising=False)
    files = []
    for p in CRASHERS:
        files.append(p)
    for name, data in _mutants():
        p = tmp_path / f"{name}.dmp"
        p.write_bytes(data)
        files.append(p)
    t = time.process_time()
    codes = {}
    for p in files:
        for cmd in DUMP_COMMANDS:
            codes[(p.name, cmd[0])] = _run(capsys, [cmd[0], p, *cmd[1:]])
        codes[(p.name, "text")] = _run(capsys, ["text", p])
        codes[(p.name, "logs")] = _run(capsys, ["logs", p])
    cpu = time.process_time() - t
    assert cpu < 10.0, cpu
    # the sweep really reached the readers: the mutants are not all refused at the signature
    assert sum(1 for (n, c), v in codes.items() if c == "stack" and v in (0, 1) and "full" in n) >= 2, codes
