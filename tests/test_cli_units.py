"""Small pieces of the CLI, in-process: WinDbg-style numbers, address expressions, text decoding,
the db line layout, the progress bar's terminal rule."""
from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dumpkit.cli._util import CliError, decode_text, parse_address, parse_length, parse_number
from dumpkit.cli.hexdump import format_line, hexdump
from dumpkit.cli.progress import Progress
from dumpkit.errors import MissingPageError
from dumpkit.model import Context, Module, ModuleList


def test_numbers_the_windbg_way():
    assert parse_number("80") == 0x80                      # hex by default
    assert parse_number("0n128") == 128
    assert parse_number("0x1F") == 0x1F
    assert parse_number("fffff804`0c800000") == 0xFFFFF8040C800000
    assert parse_length("L80") == 0x80 and parse_length("l0n16") == 16
    with pytest.raises(CliError):
        parse_length("0")
    with pytest.raises(CliError):
        parse_length("L2000000")                          # more than 16 MiB
    with pytest.raises(CliError):
        parse_length("lots")


class _FakeDump:
    modules = ModuleList([Module("ntoskrnl.exe", 0xFFFFF80000000000, 0x100000),
                          Module("lwffilter.sys", 0xFFFFF8041C7D0000, 0x6000)])
    unloaded_modules = ModuleList()


def test_address_expressions():
    d = _FakeDump()
    assert parse_address("nt", d) == 0xFFFFF80000000000
    assert parse_address("lwffilter+0x1000", d) == 0xFFFFF8041C7D1000
    assert parse_address("lwffilter + 10 - 8", d) == 0xFFFFF8041C7D0008
    ctx = Context({"rsp": 0x1000, "rip": 0}, "exception")
    assert parse_address("@rsp+8", d, ctx) == 0x1008
    for bad in ("nosuch", "nt!KeBugCheckEx", "@rsp", ""):
        with pytest.raises(CliError):
            parse_address(bad, d)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=30))
def test_address_parser_only_raises_cli_errors(text):
    try:
        parse_address(text, _FakeDump())
    except CliError:
        pass


def test_text_decoding():
    s = "BugCheck 7E, {c0000005}\r\n"
    assert decode_text(s.encode("utf-16")) == s            # BOM
    assert decode_text(s.encode("utf-16-le")) == s         # .logopen /u without a BOM
    assert decode_text(b"\xef\xbb\xbf" + s.encode()) == s
    assert decode_text("café".encode("latin-1")) == "café"


def test_db_line_layout():
    line = format_line(0xFFFFF8041C7D0000, list(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"))
    assert line == "fffff804`1c7d0000  4d 5a 90 00 03 00 00 00-04 00 00 00 ff ff 00 00  MZ.............."
    short = format_line(0x10, [0x41, None])
    assert short.startswith("00000000`00000010  41 ?? ") and short[68:] == "A?" and line[68:] == "MZ.............."

    def read(va, n):
        if va >= 0x2000:
            raise MissingPageError("not in the dump", address=va)
        return bytes([0x61]) * n
    out = list(hexdump(read, 0x1FF8, 0x10))
    assert out[0] == (None, "not in the dump")
    assert out[1][0].endswith("61 61 61 61 61 61 61 61-?? ?? ?? ?? ?? ?? ?? ??  aaaaaaaa????????")


def test_progress_only_on_a_terminal():
    pipe = io.StringIO()
    p = Progress(100, stream=pipe)
    p.update(50)
    p.close()
    assert pipe.getvalue() == ""

    class Tty(io.StringIO):
        def isatty(self):
            return True
    tty = Tty()
    p = Progress(100, stream=tty, label="x")
    p.update(50)
    p.update(100)
    p.close()
    assert "[" in tty.getvalue() and "50%" in tty.getvalue() and tty.getvalue().endswith("\r")


def test_progress_eta_is_sane_from_the_first_frame():
    """A scan whose first batch took long (opening, a cold start) and then runs at 1 GB/s:
    every ETA drawn is '--' or within 25% of the true remaining time."""
    class Tty(io.StringIO):
        def isatty(self):
            return True
    now = [100.0]
    tty = Tty()
    total = 10 * 10**9
    p = Progress(total, stream=tty, label="x", clock=lambda: now[0])
    now[0] += 30.0                                   # a slow start: 30 s before the first batch
    done = 4 << 20
    p.update(done)
    etas = []
    while done < total:
        now[0] += 0.05
        done = min(total, done + 50 * 10**6)         # 1 GB/s from here on
        p.update(done)
        frame = tty.getvalue().rsplit("\r", 1)[-1]
        if "eta " in frame:
            etas.append((frame.split("eta ")[1].strip(), (total - done) / 1e9))
    p.close()
    assert etas[0][0] == "--"
    for shown, true in etas[1:]:
        secs = float(shown[:-1]) * {"s": 1, "m": 60, "h": 3600}[shown[-1]]
        assert abs(secs - true) <= max(1.0, 0.25 * true), (shown, true)


def test_module_name_on_a_dump_without_modules_is_a_file_problem():
    """`read DAMAGED.dmp nt` where the module list could not be read: exit 3 (the file), not 2 (usage)."""
    from dumpkit.errors import CorruptDumpError

    class _NoModules:
        path = "damaged.dmp"
        modules = ModuleList()
        unloaded_modules = ModuleList()

    with pytest.raises(CorruptDumpError, match="module list"):
        parse_address("nt", _NoModules())
    with pytest.raises(CliError):                 # not a name: still the command line's fault
        parse_address("zz!x", _NoModules())
    assert parse_address("fffff804`00001000", _NoModules()) == 0xFFFFF80400001000
