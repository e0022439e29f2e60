"""Issue 11, text and log paths: each input that used to hang or raise, now fast and clean.

Before the fix (measured on the landed code): one line of 96 hex digits and ``!`` took about 7 s
in the WinDbg-text parser and 112 would not finish; 40 lines of 4,000 tabs 18-24 s; a setupapi
line of 32,000 blanks then a character 13.6 s; ``System Uptime: 9999999999 days`` raised OverflowError.
"""
from __future__ import annotations

import time
import warnings
from datetime import timedelta

import pytest

import dumpkit
from dumpkit.errors import DumpWarning, TextParseError
from dumpkit.logs import TextLines, parse_setupapi, parse_uptime
from dumpkit.text import parse_text
from dumpkit.text.stack import is_stack_header, looks_like_partial_frame, trap_frame_line

FAST = 1.0     # CPU seconds (process time: a loaded machine does not make it flaky); milliseconds once fixed


def _timed(fn, *a, **kw):
    t = time.process_time()
    try:
        fn(*a, **kw)
    except TextParseError:
        pass                      # "nothing recognised" is a fine answer; a hang is not
    return time.process_time() - t


@pytest.mark.parametrize("digits", [96, 112, 160, 4000])
def test_long_hex_run_then_bang_is_fast(digits):
    line = "f" * digits + "!"
    assert _timed(parse_text, line + "\n" + line + "\n") < FAST
    assert not looks_like_partial_frame(line)


def test_wrapped_frame_heads_are_still_joined():
    text = ("Child-SP          RetAddr           Call Site\n"
            "00 ffffec01`df2062d8 fffff804`0c9d08c2\n"
            "     nt!KeBugCheckEx\n"
            "01 ffffec01`df2062e0 fffff804`0ca0b0c4 nt!KiBugCheckDispatch+0x69\n")
    st = parse_text(text).frames
    assert [f.symbol for f in st][:2] == ["KeBugCheckEx", "KiBugCheckDispatch"]
    assert looks_like_partial_frame("03 ffffa108`8a4aee30 fffff807`662ad6b1 : 00000000`00000000 ffff8000`00000001 :")
    assert looks_like_partial_frame("ffffa108`8a4aee30 fffff807`662ad6b1")
    assert not looks_like_partial_frame("ffffa108`8a4aee30")           # one token is not a frame head
    assert not looks_like_partial_frame("03 ffffa108`8a4aee30 nt!Foo")


@pytest.mark.parametrize("ch", ["\t", " ", " \t"])
def test_lines_of_blanks_are_fast(ch):
    line = (ch * 4000)[:4000] + "x"       # a blank-only line is stripped to nothing: end it with a character
    assert _timed(parse_text, "\n".join([line] * 40) + "\nnt!KeBugCheckEx\n") < FAST
    assert not is_stack_header(line) and trap_frame_line(line) is None


def test_header_and_trap_lines_still_recognised():
    assert is_stack_header(" # Child-SP          RetAddr               Call Site")
    assert is_stack_header("ChildEBP RetAddr  Args to Child")
    assert is_stack_header(" #   Call Site")
    assert trap_frame_line("    (TrapFrame @ fffff803`4f1e6ad0)") == 0xfffff8034f1e6ad0
    assert trap_frame_line("-- TrapFrame @ fffff803`4f1e6ad0 --") == 0xfffff8034f1e6ad0


@pytest.mark.parametrize("n", [32_000, 64 * 1024])
def test_setupapi_blank_line_is_fast(n):
    text = ">>>  [Device Install (Hardware initiated) - PCI\\VEN_1]\n>>>  Section start 2022/05/05 16:18:30.000\n" \
           + " " * n + "x\n     dvi: hello\n<<<  Section end 2022/05/05 16:18:31.000\n"
    t = time.process_time()
    log = parse_setupapi(TextLines(text))
    assert time.process_time() - t < FAST
    assert len(log.sections) == 1 and log.sections[0].body


def test_setupapi_marker_and_scope_exit_still_parsed():
    text = (">>>  [Device Install (DiInstallDriver) - C:\\x\\a.inf]\n>>>  Section start 2022/05/05 16:18:30.000\n"
            "!!!  dvi:      Failed: 0xe0000219\n"
            "     dvi: {Install Device - exit(0xe0000219)}\n"
            "<<<  Section end 2022/05/05 16:18:31.000\n<<<  [Exit status: FAILURE(0xe0000219)]\n")
    (s,) = parse_setupapi(TextLines(text)).sections
    assert s.errors and [(f.name, f.code) for f in s.scope_failures] == [("Install Device", 0xE0000219)]


def test_uptime_out_of_range_is_a_warning_not_overflow():
    assert parse_uptime("System Uptime: 0 days 0:00:40.641") == timedelta(seconds=40, milliseconds=641)
    for bad in ("System Uptime: 9999999999 days 0:00:40.641", "System Uptime: " + "9" * 5000 + " days 1:00:00",
                "System Uptime: 1 days 99999999999999:00:00", "System Uptime: 1 days 1:99:00"):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            assert parse_uptime(bad) is None
        assert any(issubclass(x.category, DumpWarning) and "out of range" in str(x.message) for x in w)


def test_impossible_session_date_is_a_warning():
    from dumpkit.logs import parse_debug_session_time

    assert parse_debug_session_time("Debug session time: Mon Jun 26 08:07:55.743 2023").year == 2023
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert parse_debug_session_time("Debug session time: Mon Feb 31 99:07:55.743 2023") is None
    assert any("not a real date" in str(x.message) for x in w)


def test_analyze_text_with_huge_uptime_and_logs(tmp_path):
    log = tmp_path / "setupapi.dev.log"
    log.write_text(">>>  [Device Install (DiInstallDriver) - C:\\x\\a.inf]\n"
                   ">>>  Section start 2022/05/05 16:18:30.000\n     dvi: x\n<<<  Section end 2022/05/05 16:18:31.000\n")
    text = ("BugCheck 7E, {ffffffffc0000005, fffff8040c9d08c2, 0, 0}\n"
            "System Uptime: 9999999999 days 0:00:40.641\n"
            "Debug session time: Mon Jun 26 08:07:55.743 2023 (UTC + 8:00)\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DumpWarning)
        a = dumpkit.analyze(text, logs=str(log))
    assert a.bugcheck_code == 0x7E


def test_log_key_value_and_exit_lines_with_long_blank_runs_are_fast():
    from dumpkit.logs import parse_setupdiag, parse_wer_setup_events

    blanks = " " * 20000
    text = ("[Device Install Log]\n     OS Version = x" + blanks + "\x01\n[BeginLog]\n"
            ">>>  [X]\n>>>  Section start 2022/05/05 16:18:30.000\n<<<  Section end 2022/05/05 16:18:31.000\n"
            "<<<  [Exit status:" + " " * 3000 + "\x01\n")
    t = time.process_time()
    parse_setupapi(TextLines(text))
    parse_setupdiag(TextLines("HostOSVersion = x" + blanks + "\x01\n"))
    parse_wer_setup_events(TextLines("Event Name: WinSetupDiag02\nP1: x" + blanks + "\x01\n"))
    assert time.process_time() - t < FAST
