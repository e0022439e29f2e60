"""Encoding detection and the bounded line reader of dumpkit.logs."""
from __future__ import annotations

import codecs
import io

import pytest

from dumpkit.errors import TextParseError
from dumpkit.logs import TextLines, open_text, parse_panther, sniff_encoding
from dumpkit.logs._text import MAX_LINE_BYTES

from ._logs_util import DATA

CASE1 = (DATA / "case1_unattendgc_setupact.log").read_bytes()
CASE1_TEXT = CASE1[3:].decode("utf-8")
PNP_MSG = "在“C:\\DRIVERS\\STORE1”上没有找到驱动程序包"


def _first_message(data: bytes) -> str:
    return parse_panther(data).entries[0].message


@pytest.mark.parametrize("encoding,bom", [
    ("utf-8", b""), ("utf-8", codecs.BOM_UTF8), ("utf-16-le", codecs.BOM_UTF16_LE),
    ("utf-16-be", codecs.BOM_UTF16_BE), ("utf-16-le", b""), ("gb18030", b""), ("gbk", b""),
])
def test_chinese_case1_in_every_encoding(encoding, bom):
    data = bom + CASE1_TEXT.encode(encoding)
    log = parse_panther(data)
    assert log.counts == {"Error": 6, "Info": 1}
    assert PNP_MSG in log.entries[0].message
    assert log.entries[0].codes == (0x3,)
    assert log.decode.replaced_lines == 0


def test_sniff_choices():
    assert sniff_encoding(codecs.BOM_UTF8 + b"x") == ("utf-8", 3)
    assert sniff_encoding(codecs.BOM_UTF16_LE + "ab".encode("utf-16-le")) == ("utf-16-le", 2)
    assert sniff_encoding(codecs.BOM_UTF16_BE + "ab".encode("utf-16-be")) == ("utf-16-be", 2)
    assert sniff_encoding("系统找不到指定的路径".encode("gb18030"))[0] == "gb18030"
    assert sniff_encoding("plain ascii".encode())[0] == "utf-8"


def test_mixed_file_falls_back_per_line():
    # a UTF-8 file (beyond the sniffed sample) with one GBK line: two tools appending to one log
    head = "2023-06-26 08:02:32, Info                         [x.exe] 好 ok\r\n".encode("utf-8") * 2000
    data = head + "2023-06-26 08:02:33, Error                        [y.exe] 系统找不到指定的路径 0x3\r\n".encode("gbk")
    log = parse_panther(data)
    assert log.decode.encoding == "utf-8"
    assert log.entries[-1].message.startswith("系统找不到指定的路径")
    assert log.entries[0].message == "好 ok"
    assert log.decode.fallback_lines == 1


def test_binary_data_is_a_text_parse_error():
    with pytest.raises(TextParseError) as ei:
        parse_panther(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" * 64)
    assert "binary" in str(ei.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(TextParseError) as ei:
        parse_panther(tmp_path / "nope.log")
    assert "nope.log" in str(ei.value)
    with pytest.raises(TextParseError):
        parse_panther(tmp_path)


def test_overlong_line_is_cut_not_buffered():
    huge = b"2023-06-26 08:02:32, Error    SP     " + b"A" * (5 * MAX_LINE_BYTES) + b"\r\n"
    data = huge + b"2023-06-26 08:02:33, Info     SP     next\r\n"
    opened = open_text(io.BytesIO(data))
    lines = list(opened.lines())
    assert len(lines) == 2
    assert len(lines[0][1]) == MAX_LINE_BYTES
    assert lines[1][1].endswith("next")
    assert opened.stats.cut_lines == 1


def test_utf16_overlong_and_odd_tail():
    text = "x" * (MAX_LINE_BYTES + 10) + "\nshort\n"
    data = codecs.BOM_UTF16_LE + text.encode("utf-16-le") + b"\x41"   # stray odd byte at EOF
    lines = [t for _, t in open_text(data).lines()]
    assert lines[1] == "short"


def test_textlines_and_crlf():
    lines = list(open_text(TextLines("a\r\nb\rc\n")).lines())
    assert [t for _, t in lines] == ["a", "b", "c"]
