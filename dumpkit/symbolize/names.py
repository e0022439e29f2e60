"""Symbol-store keys and the checks applied to untrusted file names.

Names that reach the symbol code come from dumps, images and servers, so they
are untrusted: a module list can say ``..\\..\\x.pdb`` and a CodeView record can
hold any bytes.  :func:`check_name` is the single gate every name passes before it
is used in a file-system path or a URL: a bare file name made of an allow-listed
character set, no separators, no drive letter, no ``..``, bounded length.
"""
from __future__ import annotations

import re
import uuid
from typing import Union

from ..errors import SymbolError

MAX_NAME_LENGTH = 128
_NAME_RE = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.+~$@#()-]*\Z")
_KEY_RE = re.compile(r"\A[0-9A-Fa-f]{1,64}\Z")
_RESERVED = {"con", "prn", "aux", "nul", "file.ptr", "refs.ptr", "index2.txt", "pingme.txt", "000admin"} | \
    {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}


class UnsafeNameError(SymbolError):
    """A file name from an untrusted source was refused before touching disk or network."""


def check_name(name: object) -> str:
    """Return ``name`` if it is a safe bare file name, else raise :class:`UnsafeNameError`."""
    if not isinstance(name, str):
        raise UnsafeNameError(f"file name must be text, got {type(name).__name__}")
    shown = repr(name[:80])
    if not name or len(name) > MAX_NAME_LENGTH:
        raise UnsafeNameError(f"refused file name {shown}: empty or longer than {MAX_NAME_LENGTH}")
    if "/" in name or "\\" in name:
        raise UnsafeNameError(f"refused file name {shown}: contains a path separator")
    if ":" in name:
        raise UnsafeNameError(f"refused file name {shown}: drive letter or stream name")
    if name in (".", "..") or ".." in name:
        raise UnsafeNameError(f"refused file name {shown}: contains '..'")
    if not _NAME_RE.match(name):
        raise UnsafeNameError(f"refused file name {shown}: characters outside [A-Za-z0-9_.+~$@#()-]")
    stem = name.lower().split(".", 1)[0]
    if name.lower() in _RESERVED or stem in _RESERVED - {"file", "refs", "index2", "pingme"}:
        raise UnsafeNameError(f"refused file name {shown}: reserved name")
    if name.endswith("."):
        raise UnsafeNameError(f"refused file name {shown}: ends with a dot")
    return name


def check_key(key: str) -> str:
    """A store key is 1..64 hex digits."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise UnsafeNameError(f"refused store key {str(key)[:80]!r}: expected hex digits")
    return key


def base_name(path: str) -> str:
    """Last component of a Windows or POSIX path (``d:\\build\\x.pdb`` -> ``x.pdb``), then checked.

    Use this for fields that are *documented* to hold a full path (the CodeView PDB
    path, a module's full image path); names that should already be bare go
    straight to :func:`check_name`.
    """
    if not isinstance(path, str):
        raise UnsafeNameError(f"path must be text, got {type(path).__name__}")
    return check_name(path.replace("/", "\\").rstrip("\\").rsplit("\\", 1)[-1])


def as_guid(guid: Union[uuid.UUID, str, bytes]) -> uuid.UUID:
    """A GUID from a UUID, its 16 raw (little-endian, as in RSDS) bytes, or text with or without braces."""
    if isinstance(guid, uuid.UUID):
        return guid
    if isinstance(guid, (bytes, bytearray)):
        if len(guid) != 16:
            raise SymbolError(f"GUID must be 16 bytes, got {len(guid)}")
        return uuid.UUID(bytes_le=bytes(guid))
    if isinstance(guid, str):
        text = guid.strip().strip("{}").replace("-", "")
        try:
            return uuid.UUID(hex=text)
        except ValueError:
            raise SymbolError(f"not a GUID: {guid[:60]!r}") from None
    raise SymbolError(f"not a GUID: {type(guid).__name__}")


def pdb_key(guid: Union[uuid.UUID, str, bytes], age: int) -> str:
    """Store key of a PDB 7.0: ``%08X%04X%04X`` + 8x``%02X`` of the GUID, then the age as ``%X``."""
    if not isinstance(age, int) or not 0 <= age <= 0xFFFFFFFF:
        raise SymbolError(f"invalid PDB age {age!r}")
    return f"{as_guid(guid).hex.upper()}{age:X}"


def image_key(timestamp: int, size_of_image: int) -> str:
    """Store key of an image: TimeDateStamp as ``%08X`` then SizeOfImage as ``%x``."""
    if not (isinstance(timestamp, int) and 0 <= timestamp <= 0xFFFFFFFF):
        raise SymbolError(f"invalid image timestamp {timestamp!r}")
    if not (isinstance(size_of_image, int) and 0 < size_of_image <= 0xFFFFFFFF):
        raise SymbolError(f"invalid image size {size_of_image!r}")
    return f"{timestamp:08X}{size_of_image:x}"


def compressed_name(name: str) -> str:
    """``amdppm.pdb`` -> ``amdppm.pd_`` (the last character becomes ``_``)."""
    return name[:-1] + "_"
