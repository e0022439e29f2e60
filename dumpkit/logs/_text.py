"""Streaming line reader with encoding detection for Windows setup logs.

Setup logs come in every encoding Windows writes: UTF-8 with or without a BOM
(Panther, UnattendGC), UTF-16 LE with a BOM (SetupDiag XML, some exports), and
the machine's ANSI code page (setupapi logs; GBK/GB18030 on Chinese Windows).
The reader sniffs a sample, picks a primary encoding and then decodes one line
at a time, falling back per line (UTF-8 -> GB18030 -> replacement) so a file
with one odd line still parses.  Lines are capped in length and read through a
bounded buffer, so a 500 MB log or a file of binary garbage costs constant
memory.
"""
from __future__ import annotations

import codecs
import io
import os
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator, Optional, Tuple, Union

from ..errors import TextParseError

#: what the parsers accept: a path, raw bytes, a binary stream, or already-decoded text
LogSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO, "TextLines"]

MAX_LINE_BYTES = 64 * 1024     #: a physical line longer than this is cut (the rest is skipped)
SAMPLE_BYTES = 64 * 1024       #: bytes sniffed to choose the encoding
_CHUNK = 256 * 1024


class TextLines:
    """Already-decoded text handed to a parser (pasted log text, test strings)."""

    __slots__ = ("text", "name")

    def __init__(self, text: str, name: Optional[str] = None) -> None:
        self.text = text
        self.name = name

    def __repr__(self) -> str:
        return f"TextLines({self.name or '<text>'}, {len(self.text)} chars)"


@dataclass
class DecodeStats:
    """How a file was decoded (filled in while lines are read)."""

    encoding: str = "utf-8"
    bom: bool = False
    lines: int = 0
    fallback_lines: int = 0       # lines decoded with the secondary encoding
    replaced_lines: int = 0       # lines that needed replacement characters
    cut_lines: int = 0            # physical lines longer than MAX_LINE_BYTES
    read_error: Optional[str] = None   # the stream failed part way (damaged archive member)

    def __repr__(self) -> str:
        extra = []
        if self.bom:
            extra.append("BOM")
        if self.fallback_lines:
            extra.append(f"{self.fallback_lines} fallback")
        if self.replaced_lines:
            extra.append(f"{self.replaced_lines} replaced")
        if self.cut_lines:
            extra.append(f"{self.cut_lines} cut")
        if self.read_error:
            extra.append(f"read error: {self.read_error}")
        tail = (", " + ", ".join(extra)) if extra else ""
        return f"<DecodeStats {self.encoding}, {self.lines} lines{tail}>"


def _looks_utf16(sample: bytes) -> Optional[str]:
    """'utf-16-le'/'utf-16-be' for BOM-less UTF-16 text (NULs in alternate bytes)."""
    n = len(sample) & ~1
    if n < 16:
        return None
    even = sample[0:n:2]
    odd = sample[1:n:2]
    half = n // 2
    if odd.count(0) > 0.4 * half and even.count(0) < 0.05 * half:
        return "utf-16-le"
    if even.count(0) > 0.4 * half and odd.count(0) < 0.05 * half:
        return "utf-16-be"
    return None


def _valid(sample: bytes, encoding: str) -> bool:
    """True when the sample decodes strictly (a multi-byte char cut at the end is allowed)."""
    dec = codecs.getincrementaldecoder(encoding)("strict")
    try:
        dec.decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


def sniff_encoding(sample: bytes) -> Tuple[str, int]:
    """Choose an encoding for a file from its first bytes: (codec name, BOM length).

    Raises TextParseError for content that is plainly binary (NUL bytes that are
    not UTF-16 text).
    """
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8", 3
    if sample.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le", 2
    if sample.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", 2
    guess = _looks_utf16(sample)
    if guess:
        return guess, 0
    if sample.count(0) > max(4, len(sample) // 100):
        raise TextParseError("binary data, not a text log", offset=sample.index(0),
                             expected="UTF-8, UTF-16 or ANSI text")
    if _valid(sample, "utf-8"):
        return "utf-8", 0
    if _valid(sample, "gb18030"):
        return "gb18030", 0
    return "cp1252", 0


class _LineReader:
    """Iterates (line_number, text) over a binary stream, bounded memory."""

    def __init__(self, stream: BinaryIO, name: Optional[str], stats: DecodeStats) -> None:
        self._stream = stream
        self.name = name
        self.stats = stats
        self._stream_failed = stats.read_error is not None

    # -- raw reading -------------------------------------------------------
    def _read(self, n: int) -> bytes:
        if self._stream_failed:
            return b""
        try:
            data = self._stream.read(n)
        except Exception as e:  # noqa: BLE001 - zip CRC/zlib/EOF errors of damaged members
            if self.stats.read_error is None:
                self.stats.read_error = f"{type(e).__name__}: {e}"
            self._stream_failed = True
            return b""
        return data or b""

    def _physical_lines(self, first: bytes, sep: bytes, unit: int) -> Iterator[bytes]:
        """Split the byte stream on ``sep`` (aligned to ``unit``), capping line length."""
        buf = bytearray(first)
        skipping = False
        eof = False
        while True:
            start = 0
            while True:
                idx = buf.find(sep, start)
                while idx != -1 and unit == 2 and idx % 2:
                    idx = buf.find(sep, idx + 1)
                if idx == -1:
                    break
                line = bytes(buf[start:idx])
                start = idx + len(sep)
                if skipping:
                    skipping = False
                    continue
                yield line
            del buf[:start]
            if eof:
                if buf and not skipping:
                    yield bytes(buf)
                return
            if len(buf) > MAX_LINE_BYTES:
                if not skipping:
                    cut = MAX_LINE_BYTES - (MAX_LINE_BYTES % unit)
                    self.stats.cut_lines += 1
                    yield bytes(buf[:cut])
                    skipping = True
                # keep the alignment remainder (and for UTF-16 one code unit, so a
                # separator split across two chunks is still found)
                keep = len(buf) % unit + (2 if unit == 2 else 0)
                del buf[: len(buf) - keep]
            chunk = self._read(_CHUNK)
            if not chunk:
                eof = True
            else:
                buf += chunk

    def lines(self, first: bytes) -> Iterator[Tuple[int, str]]:
        enc = self.stats.encoding
        if enc.startswith("utf-16"):
            sep = b"\n\x00" if enc.endswith("le") else b"\x00\n"
            unit = 2
        else:
            sep, unit = b"\n", 1
        secondary = "gb18030" if enc == "utf-8" else ("utf-8" if enc == "gb18030" else None)
        n = 0
        for raw in self._physical_lines(first, sep, unit):
            n += 1
            text: Optional[str]
            try:
                text = raw.decode(enc)
            except UnicodeDecodeError:
                text = None
                if secondary:
                    try:
                        text = raw.decode(secondary)
                        self.stats.fallback_lines += 1
                    except UnicodeDecodeError:
                        text = None
                if text is None:
                    text = raw.decode(enc, errors="replace")
                    self.stats.replaced_lines += 1
            assert text is not None
            if text.endswith("\r"):
                text = text[:-1]
            if n == 1 and text.startswith("\ufeff"):
                text = text[1:]
            self.stats.lines = n
            yield n, text


def _open_stream(source: LogSource) -> Tuple[BinaryIO, Optional[str], bool]:
    """(binary stream, display name, whether we own and must close it)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source)), None, True
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            if os.path.isdir(path):
                raise TextParseError("is a directory, not a log file", path=path)
            return open(path, "rb"), path, True  # noqa: SIM115 - closed by the caller
        except OSError as e:
            raise TextParseError(f"cannot open log: {e.strerror or e}", path=path) from e
    if hasattr(source, "read"):
        return source, getattr(source, "name", None) if isinstance(getattr(source, "name", None), str) else None, False  # type: ignore[return-value]
    raise TextParseError(f"unsupported log source type {type(source).__name__}",
                         expected="path, bytes, binary stream or TextLines")


@dataclass
class OpenedText:
    """An opened log: iterate ``lines()`` once; ``stats`` tells how it was decoded."""

    name: Optional[str]
    stats: DecodeStats = field(default_factory=DecodeStats)
    _iter: Optional[Iterator[Tuple[int, str]]] = None

    def lines(self) -> Iterator[Tuple[int, str]]:
        it, self._iter = self._iter, None
        if it is None:
            return iter(())
        return it


def open_text(source: LogSource, *, name: Optional[str] = None) -> OpenedText:
    """Open a log for line iteration.

    ``source`` is a path, bytes, a binary stream (e.g. a zip member) or
    :class:`TextLines`.  Raises :class:`TextParseError` when the file cannot be
    opened or is binary.  The returned object yields ``(line_number, text)``
    (1-based, without the line ending) and closes the file when exhausted.
    """
    if isinstance(source, TextLines):
        opened = OpenedText(name or source.name, DecodeStats(encoding="str"))

        def gen_text() -> Iterator[Tuple[int, str]]:
            n = 0
            for n, line in enumerate(io.StringIO(source.text, newline=None), 1):
                line = line.rstrip("\r\n")
                if len(line) > MAX_LINE_BYTES:
                    opened.stats.cut_lines += 1
                    line = line[:MAX_LINE_BYTES]
                opened.stats.lines = n
                yield n, line
        opened._iter = gen_text()
        return opened
    stream, sname, own = _open_stream(source)
    stats = DecodeStats()
    try:
        try:
            first = stream.read(SAMPLE_BYTES) or b""
        except Exception as e:  # noqa: BLE001 - damaged zip member, I/O error
            stats.read_error = f"{type(e).__name__}: {e}"
            first = b""
        enc, bom = sniff_encoding(first)
    except TextParseError as e:
        if own:
            stream.close()
        raise TextParseError(e.message, path=name or sname, offset=e.offset, expected=e.expected) from None
    except BaseException:
        if own:
            stream.close()
        raise
    stats.encoding, stats.bom = enc, bool(bom)
    reader = _LineReader(stream, name or sname, stats)
    opened = OpenedText(name or sname, stats)

    def gen() -> Iterator[Tuple[int, str]]:
        try:
            yield from reader.lines(first[bom:])
        finally:
            if own:
                stream.close()
    opened._iter = gen()
    return opened
