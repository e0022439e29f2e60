"""Random text and bytes: the log parsers give results or TextParseError, quickly, never anything else."""
from __future__ import annotations

import io
import zipfile

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dumpkit.errors import TextParseError
from dumpkit.logs import (TextLines, correlate, open_bundle, parse_panther, parse_setup_ini, parse_setupapi,
                          parse_setupdiag, parse_wer_setup_events, summarize_logs)

from ._logs_util import DATA

CASE1 = (DATA / "case1_unattendgc_setupact.log").read_bytes()
CASE2 = (DATA / "case2_setupapi.dev.log").read_bytes()
FAST = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

# text built from the tokens the grammars care about, so the fuzzer reaches deep states
TOKENS = st.sampled_from([
    "2023-06-26 08:02:32, ", "Error", "Info", "Warning", "Fatal Error", "  ", "[PNPUNATTEND.EXE] ", "SP     ",
    "[0x0f0070] ", "0x8030000C", "hr = 0x8007045b", "错误代码 0x3", "“C:\\DRIVERS\\STORE1”", ")", "\n", "\r\n",
    ">>>  [Device Install - x]", ">>>  Section start 2022/05/05 16:18:32.182", "<<<  Section end 2022/05/05 16:18:32.182",
    "<<<  [Exit status: FAILURE(0x80071a2d)]", "     inf: DelService=lwfmgr,0x200  (lwfmgr.inf line 82)",
    "!!!  dvi: ", "{X - exit(0x00000001)}", "[Boot Session: 2022/05/05 16:18:32.182]", "[Device Install Log]",
    "Crash 0x0000007E detected", "Bugcheck parameter 1  : 0x1", "Matching Profile found: X - ", "Error = 0xC1900101-0x4001E",
    "<SetupDiag>", "<ProfileName>", "</ProfileName>", "{", "P5: 0x1", "Event Name: WinSetupDiag02", "=", "\x00", "\ufeff",
])
TEXT = st.one_of(st.text(max_size=400), st.lists(TOKENS, max_size=60).map("".join))
PARSERS = [parse_panther, parse_setupapi, parse_setupdiag, parse_setup_ini, parse_wer_setup_events]


def _run_all(src):
    for parse in PARSERS:
        try:
            parse(src)
        except TextParseError:
            pass


@FAST
@given(TEXT)
def test_random_text(text):
    _run_all(TextLines(text))
    for enc in ("utf-8", "utf-16", "gb18030"):
        _run_all(text.encode(enc, errors="replace"))
    try:
        f = summarize_logs([parse_panther(TextLines(text)), parse_setupapi(TextLines(text))])
        correlate(f, modules=["lwfmgr", "nt"], culprit="lwfmgr")
        f.render()
    except TextParseError:
        pass


@FAST
@given(st.binary(max_size=2048))
def test_random_bytes(data):
    _run_all(data)
    _run_all(CASE1[:20] + data)


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("Windows/Panther/UnattendGC/setupact.log", CASE1)
        z.writestr("Windows/INF/setupapi.dev.log", CASE2)
        z.writestr("Windows/Logs/SetupDiag/SetupDiagResults.log", b"Matching Profile found: X - " + b"0" * 36)
    return buf.getvalue()


ZIP = _zip()


@settings(max_examples=150, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(ZIP) - 1), st.integers(0, 255)), max_size=12),
       st.integers(0, len(ZIP)))
@example(flips=[(ZIP.index(b"PK\x01\x02") + 46, 0)], cut=0)     # NUL as first name byte: empty member name
@example(flips=[(1265, 0)], cut=0)                               # the case hypothesis found (zipfile IndexError)
def test_damaged_zip_never_crashes(flips, cut):
    data = bytearray(ZIP)
    for off, val in flips:
        data[off] = val
    b = open_bundle(bytes(data[:cut] if cut else data))
    f = summarize_logs(b)
    correlate(f, modules=["lwfmgr"], culprit="lwfmgr")
    repr(b), f.render()
