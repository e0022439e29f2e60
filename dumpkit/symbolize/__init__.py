"""Symbols: a PDB reader, ``_NT_SYMBOL_PATH`` symbol paths and stores, a SymSrv HTTP client,
and the resolver that names addresses (PDB, then exports, then module+offset).

>>> from dumpkit.symbolize import Resolver, SymbolPath
>>> r = Resolver("srv*/var/cache/sym*https://msdl.microsoft.com/download/symbols", offline=True)  # doctest: +SKIP
>>> r.resolve(module, 0xfffff8048b58334c).text                       # doctest: +SKIP
'amdppm!WriteIoMemRawEx+0x70'
"""
from __future__ import annotations

from .cab import Cabinet, extract_single
from .msf import MsfFile
from .names import UnsafeNameError, check_name, image_key, pdb_key
from .pdb import ModuleInfo, Pdb, Procedure, PublicSymbol, SectionHeader, SymbolHit
from .resolver import ModuleSymbols, Resolution, Resolver, open_image
from .server import FetchResult, NegativeCache, SymbolServer, network_disabled
from .store import Attempt, LocalStore, SymbolPath, default_cache_dir
from .undname import undecorate

__all__ = [
    "Pdb", "MsfFile", "PublicSymbol", "Procedure", "SectionHeader", "ModuleInfo", "SymbolHit",
    "SymbolPath", "LocalStore", "Attempt", "default_cache_dir",
    "SymbolServer", "NegativeCache", "FetchResult", "network_disabled",
    "Resolver", "Resolution", "ModuleSymbols", "open_image",
    "Cabinet", "extract_single", "UnsafeNameError", "check_name", "pdb_key", "image_key", "undecorate",
]
