"""Byte sources: a file opened through mmap (zero-copy) or an in-memory buffer.

Every read is bounds-checked and turns into :class:`TruncatedDumpError` with the
file name and offset, so higher layers never see a short read or an IndexError.
"""
from __future__ import annotations

import mmap
import os
import stat
import struct
from typing import Optional, Union

from .errors import DumpError, TruncatedDumpError

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_LARGE = 64 << 20
MAX_STREAM = 4 << 30           # what we read from a pipe into memory, at most
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)    # Linux value; Python 3.11 lacks the name
_POPULATE_OK = [True]


class Source:
    """Random access to the bytes of one dump file.

    ``Source.open(path)`` maps the file read-only; ``Source.from_bytes(b)`` wraps
    a buffer (tests, pipes).  ``view()`` returns zero-copy memoryviews.
    """

    def __init__(self, buffer: Union[bytes, bytearray, memoryview, mmap.mmap], path: str = "<memory>",
                 _file=None) -> None:
        self._buf = buffer
        self._mv = memoryview(buffer) if len(buffer) else memoryview(b"")
        self.path = path
        self.size = len(buffer)
        self._file = _file
        # random page reads of a large mapped file go through pread: a page fault on a
        # mapping maps the cached neighbours too ("fault-around"), so RSS would grow
        # with every random read; pread copies just the bytes asked for
        self._fd = _file.fileno() if (_file is not None and self.size > _LARGE) else None

    @classmethod
    def open(cls, path: Union[str, os.PathLike]) -> "Source":
        p = os.fspath(path)
        if os.path.isdir(p):
            raise DumpError("is a directory, not a dump file", path=p)
        try:
            f = open(p, "rb")
        except OSError as exc:
            raise DumpError(f"cannot open: {exc.strerror or exc}", path=p) from None
        try:
            st = os.fstat(f.fileno())
            size = st.st_size
            if not stat.S_ISREG(st.st_mode):
                # a pipe, FIFO or character device: its size is unknown until read
                data = f.read(MAX_STREAM + 1)
                f.close()
                if len(data) > MAX_STREAM:
                    raise DumpError(f"more than {MAX_STREAM >> 20} MiB from a pipe", path=p,
                                    hint="save the dump to a file and open that")
                return cls(data, p)
            if size == 0:
                f.close()
                return cls(b"", p)
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            if size > _LARGE:
                # page lookups are random: without this, each fault reads ahead and maps its
                # neighbours, and RSS grows with every random read
                try:
                    mm.madvise(mmap.MADV_RANDOM)
                except (AttributeError, OSError, ValueError):
                    pass
        except (OSError, ValueError):
            # not mappable (pipe, special file): read it whole
            data = f.read()
            f.close()
            return cls(data, p)
        return cls(mm, p, _file=f)

    @classmethod
    def from_bytes(cls, data: Union[bytes, bytearray], path: str = "<memory>") -> "Source":
        return cls(bytes(data), path)

    # ------------------------------------------------------------------
    def _check(self, offset: int, size: int, what: Optional[str]) -> None:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise TruncatedDumpError(
                f"truncated at offset {self.size:#x}: cannot read {size:#x} bytes"
                + (f" of {what}" if what else ""),
                path=self.path, offset=offset, expected=what)

    def read(self, offset: int, size: int, what: Optional[str] = None) -> bytes:
        self._check(offset, size, what)
        return bytes(self._mv[offset:offset + size])

    def view(self, offset: int, size: int, what: Optional[str] = None) -> memoryview:
        self._check(offset, size, what)
        return self._mv[offset:offset + size]

    def read_page(self, offset: int, size: int) -> bytes:
        """Bytes for a random page-sized read (caller has bounds-checked)."""
        if self._fd is not None:
            return os.pread(self._fd, size, offset)
        return bytes(self._mv[offset:offset + size])

    def read_partial(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes (fewer at end of file, empty past it)."""
        if offset >= self.size or offset < 0:
            return b""
        return bytes(self._mv[offset:min(self.size, offset + size)])

    def u16(self, offset: int, what: Optional[str] = None) -> int:
        self._check(offset, 2, what)
        return _U16.unpack_from(self._mv, offset)[0]

    def u32(self, offset: int, what: Optional[str] = None) -> int:
        self._check(offset, 4, what)
        return _U32.unpack_from(self._mv, offset)[0]

    def u64(self, offset: int, what: Optional[str] = None) -> int:
        self._check(offset, 8, what)
        return _U64.unpack_from(self._mv, offset)[0]

    def advise(self, advice: str, offset: int = 0, size: Optional[int] = None) -> None:
        """madvise the mapping: 'random' (no read-ahead: random page reads touch one page)
        or 'sequential' (read-ahead for a scan).  A no-op where unsupported."""
        flag = getattr(mmap, "MADV_RANDOM" if advice == "random" else "MADV_SEQUENTIAL", None)
        if flag is None or not isinstance(self._buf, mmap.mmap):
            return
        start = offset & ~(mmap.PAGESIZE - 1)
        end = self.size if size is None else min(self.size, offset + size)
        if end > start:
            try:
                self._buf.madvise(flag, start, end - start)
            except (OSError, ValueError):
                pass

    def release_pages(self, offset: int = 0, size: Optional[int] = None) -> None:
        """Drop mapped file pages from this process (they stay in the OS page cache).

        File-backed pages touched through the mmap count towards RSS; a long scan calls
        this behind itself so memory stays flat whatever the dump size.
        """
        if not isinstance(self._buf, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED"):
            return
        start = offset & ~(mmap.PAGESIZE - 1)
        end = self.size if size is None else min(self.size, offset + size)
        if end <= start:
            return
        try:
            self._buf.madvise(mmap.MADV_DONTNEED, start, end - start)
        except (OSError, ValueError):
            pass

    def fileno(self) -> Optional[int]:
        """The open file's descriptor (None for in-memory sources and closed files)."""
        f = self._file
        return f.fileno() if f is not None and not f.closed else None

    def prefetch(self, offset: int, size: int) -> None:
        """Ask the kernel to start reading ``[offset, offset+size)`` into the page cache now
        (``POSIX_FADV_WILLNEED``; it returns at once).  A scan calls it for the batches ahead of
        the one it hands out, so a cold read keeps the disk busy.  A no-op where unsupported."""
        fd = self.fileno()
        if fd is None or size <= 0 or offset >= self.size or not hasattr(os, "posix_fadvise"):
            return
        try:
            os.posix_fadvise(fd, offset, min(size, self.size - offset), os.POSIX_FADV_WILLNEED)
        except OSError:
            pass

    def populate(self, offset: int, size: int) -> None:
        """Map ``[offset, offset+size)`` of the file into this process in one call
        (``MADV_POPULATE_READ``, Linux 5.14+) instead of one page fault per page."""
        if not isinstance(self._buf, mmap.mmap) or size <= 0 or not _POPULATE_OK[0]:
            return
        start = offset & ~(mmap.PAGESIZE - 1)
        end = min(self.size, offset + size)
        try:
            self._buf.madvise(_MADV_POPULATE_READ, start, end - start)
        except OSError:
            _POPULATE_OK[0] = False           # an older kernel (EINVAL): fault pages in instead
        except ValueError:
            pass

    def read_into(self, offset: int, out: memoryview, what: Optional[str] = None) -> None:
        """Fill ``out`` with the bytes at ``offset`` (``preadv`` on the file: nothing is mapped)."""
        size = len(out)
        self._check(offset, size, what)
        fd = self.fileno()
        if fd is None or not hasattr(os, "preadv"):
            out[:] = self._mv[offset:offset + size]
            return
        done = 0
        while done < size:
            n = os.preadv(fd, [out[done:]], offset + done)
            if n <= 0:
                raise TruncatedDumpError(f"truncated at offset {offset + done:#x}: the file shrank while read",
                                         path=self.path, offset=offset + done, expected=what)
            done += n

    @property
    def buffer(self) -> memoryview:
        return self._mv

    def close(self) -> None:
        self._fd = None
        try:
            self._mv.release()
        except Exception:  # pragma: no cover - views still exported
            pass
        if isinstance(self._buf, mmap.mmap):
            try:
                self._buf.close()
            except BufferError:
                # memoryviews handed out are still alive; the mapping goes when they do
                pass
        if self._file is not None:
            self._file.close()
            self._file = None

    def __repr__(self) -> str:
        return f"<Source {self.path!r} {self.size:,} bytes>"
