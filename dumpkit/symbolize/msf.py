"""The MSF 7.00 container ("multi-stream file") that holds a PDB.

An MSF file is an array of fixed-size blocks.  Block 0 is the superblock; the
stream directory lists every stream's size and the blocks it occupies.  This
module maps the file read-only and hands out streams as bytes, checking every
block number, size and count against the file so that a damaged or hostile file
gives a :class:`~dumpkit.errors.PdbError` (file, offset, what was expected),
never a raw ``struct.error``/``IndexError`` and never an allocation larger than
the file itself.

Layout facts (all little-endian):

* superblock at offset 0: 32-byte magic, then ``BlockSize``, ``FreeBlockMapBlock``,
  ``NumBlocks``, ``NumDirectoryBytes``, an unused u32 and ``BlockMapAddr``;
* ``BlockMapAddr`` is the block holding the u32 numbers of the directory's blocks
  (the "block map of the directory");
* directory: ``NumStreams``, ``NumStreams`` sizes (``0xFFFFFFFF`` = nil stream),
  then each stream's block numbers in stream order;
* the free block map (FPM) is a bit array, one bit per block (1 = free), stored in
  block ``FreeBlockMapBlock`` of every interval of ``BlockSize`` blocks.
"""
from __future__ import annotations

import os
import struct
from typing import Dict, List, Optional, Tuple, Union

from ..errors import DumpError, PdbError
from ..io import Source

MSF7_MAGIC = b"Microsoft C/C++ MSF 7.00\r\n\x1aDS\x00\x00\x00"
MSF2_MAGIC = b"Microsoft C/C++ program database 2.00\r\n\x1aJG"
NIL_STREAM = 0xFFFFFFFF
VALID_BLOCK_SIZES = (512, 1024, 2048, 4096, 8192, 16384, 32768)

_SUPER = struct.Struct("<6I")        # after the 32-byte magic
_U32 = struct.Struct("<I")


class MsfFile:
    """Read-only view of an MSF 7.00 file with bounds-checked stream access.

    Use :meth:`open` for a path or :meth:`from_bytes` for a buffer.  Streams are
    read on demand (:meth:`stream`), so opening a 100 MB PDB costs only the
    superblock and the directory.
    """

    def __init__(self, data: Union[bytes, bytearray, memoryview], path: str = "<memory>",
                 _source: Optional[Source] = None) -> None:
        self.path = path
        self._mv = memoryview(data)
        self._source = _source
        self.file_size = len(self._mv)
        try:
            self._parse_superblock()
            self._parse_directory()
        except BaseException:
            self._mv.release()
            raise

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: Union[str, os.PathLike]) -> "MsfFile":
        """Map the file read-only (through :class:`dumpkit.io.Source`)."""
        try:
            src = Source.open(path)
        except DumpError as exc:
            raise PdbError(f"cannot open PDB: {exc.message}", path=os.fspath(path)) from None
        try:
            return cls(src.buffer, src.path, _source=src)
        except BaseException:
            src.close()
            raise

    @classmethod
    def from_bytes(cls, data: Union[bytes, bytearray], path: str = "<memory>") -> "MsfFile":
        return cls(bytes(data), path)

    def close(self) -> None:
        """Release the mapping (streams already returned stay valid: they are copies)."""
        try:
            self._mv.release()
        except Exception:  # pragma: no cover
            pass
        if self._source is not None:
            self._source.close()
            self._source = None

    def __enter__(self) -> "MsfFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ parsing
    def _err(self, message: str, offset: Optional[int] = None, expected: Optional[str] = None) -> PdbError:
        return PdbError(message, path=self.path, offset=offset, expected=expected)

    def _parse_superblock(self) -> None:
        mv = self._mv
        if self.file_size < 32 + _SUPER.size:
            if bytes(mv[:len(MSF2_MAGIC)]) == MSF2_MAGIC[: self.file_size] and self.file_size >= 8:
                raise self._err("PDB 2.00 (JG) format is not supported", 0, "MSF 7.00")
            raise self._err(f"file too small for an MSF superblock ({self.file_size} bytes)", 0,
                            "MSF 7.00 superblock (56 bytes)")
        magic = bytes(mv[:32])
        if magic != MSF7_MAGIC:
            if bytes(mv[:len(MSF2_MAGIC)]) == MSF2_MAGIC:
                raise self._err("PDB 2.00 (JG) format is not supported", 0, "MSF 7.00")
            raise self._err("not a PDB: bad MSF magic", 0, "'Microsoft C/C++ MSF 7.00'")
        (bs, fpm, nblocks, ndir, _unused, bmap) = _SUPER.unpack_from(mv, 32)
        if bs not in VALID_BLOCK_SIZES:
            raise self._err(f"invalid block size {bs}", 32, "512, 1024, 2048 or 4096")
        if fpm not in (1, 2):
            raise self._err(f"invalid free block map block {fpm}", 36, "1 or 2")
        file_blocks = -(-self.file_size // bs)
        if nblocks == 0 or nblocks > file_blocks:
            raise self._err(f"superblock says {nblocks} blocks but the file holds {file_blocks}"
                            " (truncated?)", 40, f"at most {file_blocks} blocks")
        if ndir == 0 or ndir > nblocks * bs:
            raise self._err(f"invalid stream directory size {ndir}", 44,
                            f"1..{nblocks * bs} bytes")
        if bmap == 0 or bmap >= nblocks:
            raise self._err(f"directory block map address {bmap} out of range", 52,
                            f"1..{nblocks - 1}")
        self.block_size = bs
        self.free_block_map_block = fpm
        self.num_blocks = nblocks
        self.directory_size = ndir
        self.block_map_addr = bmap

    def _block_offset(self, block: int, what: str, at: Optional[int] = None) -> int:
        if block >= self.num_blocks or block == 0:
            raise self._err(f"block {block} of {what} out of range", at,
                            f"1..{self.num_blocks - 1}")
        return block * self.block_size

    def _gather(self, blocks: List[int], size: int, what: str) -> bytes:
        """Concatenate ``size`` bytes from ``blocks`` (each checked); runs of consecutive blocks
        (the usual layout) are copied as one slice."""
        bs = self.block_size
        need = -(-size // bs)
        if len(blocks) < need:
            raise self._err(f"{what}: {len(blocks)} blocks hold fewer than {size} bytes", None,
                            f"{need} blocks")
        mv = self._mv
        fsize = self.file_size
        nblocks = self.num_blocks
        parts = []
        i = 0
        left = size
        while i < need:
            b = blocks[i]
            if b >= nblocks or b == 0:
                self._block_offset(b, what)                  # raises with the details
            j = i + 1
            while j < need and blocks[j] == blocks[j - 1] + 1 and blocks[j] < nblocks:
                j += 1
            off = b * bs
            n = min((j - i) * bs, left)
            if off + n > fsize:
                bad = b + max(0, fsize - off) // bs          # the first block of the run that is cut
                raise self._err(f"{what}: block {bad} runs past the end of the file (truncated)", bad * bs,
                                f"{min(bs, off + n - bad * bs)} bytes")
            parts.append(mv[off:off + n])
            left -= n
            i = j
        return parts[0].tobytes() if len(parts) == 1 else b"".join(parts)

    def _parse_directory(self) -> None:
        bs = self.block_size
        ndir_blocks = -(-self.directory_size // bs)
        # the block map of the directory: u32 block numbers starting at BlockMapAddr
        map_bytes = ndir_blocks * 4
        map_blocks = -(-map_bytes // bs)
        start = self.block_map_addr * bs
        if self.block_map_addr + map_blocks > self.num_blocks or start + map_bytes > self.file_size:
            raise self._err("directory block map runs past the end of the file", start,
                            f"{map_bytes} bytes")
        dir_blocks = list(struct.unpack_from(f"<{ndir_blocks}I", self._mv, start))
        d = self._gather(dir_blocks, self.directory_size, "stream directory")
        n = len(d)
        if n < 4:
            raise self._err("stream directory too small", None, "at least 4 bytes")
        nstreams = _U32.unpack_from(d, 0)[0]
        if nstreams == 0 or 4 + 4 * nstreams > n:
            raise self._err(f"stream directory claims {nstreams} streams in {n} bytes", None,
                            "a stream count that fits the directory")
        sizes = list(struct.unpack_from(f"<{nstreams}I", d, 4))
        pos = 4 + 4 * nstreams
        remaining = (n - pos) // 4
        counts = []
        total = 0
        for s in sizes:
            c = 0 if s == NIL_STREAM else -(-s // bs)
            counts.append(c)
            total += c
        if total > remaining:
            raise self._err(f"stream directory lists {total} blocks but holds only {remaining}", None,
                            "block lists inside the directory")
        if total > self.num_blocks * 4:
            raise self._err("stream directory lists implausibly many blocks", None,
                            f"at most {self.num_blocks}")
        allb = struct.unpack_from(f"<{total}I", d, pos) if total else ()
        self._sizes: List[int] = sizes
        self._blocks: List[Tuple[int, ...]] = []
        k = 0
        for c in counts:
            self._blocks.append(tuple(allb[k:k + c]))
            k += c

    # ------------------------------------------------------------------ streams
    @property
    def num_streams(self) -> int:
        return len(self._sizes)

    def stream_size(self, index: int) -> int:
        """Size in bytes (0 for a nil or missing stream)."""
        if not 0 <= index < len(self._sizes):
            return 0
        s = self._sizes[index]
        return 0 if s == NIL_STREAM else s

    def has_stream(self, index: int) -> bool:
        return 0 <= index < len(self._sizes) and self._sizes[index] != NIL_STREAM

    def stream_blocks(self, index: int) -> Tuple[int, ...]:
        if not 0 <= index < len(self._sizes):
            raise self._err(f"stream {index} does not exist ({len(self._sizes)} streams)", None,
                            f"0..{len(self._sizes) - 1}")
        return self._blocks[index]

    def stream(self, index: int, what: Optional[str] = None) -> bytes:
        """The whole content of stream ``index`` (bounds-checked; nil streams are empty)."""
        label = f"stream {index}" + (f" ({what})" if what else "")
        if not 0 <= index < len(self._sizes):
            raise self._err(f"{label} does not exist ({len(self._sizes)} streams)", None,
                            f"stream index 0..{len(self._sizes) - 1}")
        size = self._sizes[index]
        if size == NIL_STREAM or size == 0:
            return b""
        return self._gather(list(self._blocks[index]), size, label)

    # ------------------------------------------------------------------ free block map
    def free_blocks(self) -> List[int]:
        """Block numbers the free block map marks as free.

        The FPM has one bit per block; its bytes live in block ``FreeBlockMapBlock``
        of each interval of ``BlockSize`` blocks (block ``fpm``, ``fpm + bs``, ...).
        """
        bs = self.block_size
        nblocks = self.num_blocks
        bits = bytearray()
        need = -(-nblocks // 8)
        interval = 0
        while len(bits) < need:
            blk = interval * bs + self.free_block_map_block
            if blk >= nblocks:
                break
            off = blk * bs
            chunk = self._mv[off:min(off + bs, self.file_size)]
            bits += chunk
            interval += 1
        free = []
        for b in range(min(nblocks, len(bits) * 8)):
            if bits[b >> 3] >> (b & 7) & 1:
                free.append(b)
        return free

    def check(self) -> List[str]:
        """Consistency problems (blocks used twice, used blocks marked free); empty if none."""
        problems: List[str] = []
        owner: Dict[int, int] = {}
        for i, blocks in enumerate(self._blocks):
            if i == 0:          # the old directory: its blocks are normally released
                continue
            for b in blocks:
                if b in owner:
                    problems.append(f"block {b} used by streams {owner[b]} and {i}")
                else:
                    owner[b] = i
        free = set(self.free_blocks())
        used_free = sorted(b for b in owner if b in free)
        if used_free:
            problems.append(f"{len(used_free)} blocks used by streams are marked free "
                            f"(first: {used_free[0]})")
        return problems

    def __repr__(self) -> str:
        return (f"<MsfFile {self.path!r} block_size={self.block_size} blocks={self.num_blocks} "
                f"streams={self.num_streams}>")
