"""Symbols: a PDB reader, ``_NT_SYMBOL_PATH`` symbol paths and stores, a SymSrv HTTP client,
and the resolver that names addresses (PDB, then exports, then module+offset).

>>> from dumpkit.symbolize import Resolver, SymbolPath
>>> r = Resolver("srv*/var/cache/sym*https://msdl.microsoft.com/download/symbols", offline=True)  # doctest: +SKIP
>>> r.resolve(module, 0xfffff8048b58334c).text                       # doctest: +SKIP
'amdppm!WriteIoMemRawEx+0x70'
"""
from __future__ import annotations

import importlib
from typing import Any

# names are imported on first use (PEP 562): ``from dumpkit.symbolize.pdb import Pdb`` must not
# pull in the HTTP client, and ``import dumpkit`` must not pull in any of this
_WHERE = {
    "Cabinet": "cab", "extract_single": "cab", "MsfFile": "msf",
    "UnsafeNameError": "names", "check_name": "names", "image_key": "names", "pdb_key": "names",
    "ModuleInfo": "pdb", "Pdb": "pdb", "Procedure": "pdb", "PublicSymbol": "pdb", "SectionHeader": "pdb",
    "SymbolHit": "pdb",
    "ModuleSymbols": "resolver", "Resolution": "resolver", "Resolver": "resolver", "open_image": "resolver",
    "FetchResult": "server", "NegativeCache": "server", "RunBudget": "server", "SymbolServer": "server", "network_disabled": "server",
    "Attempt": "store", "LocalStore": "store", "SymbolPath": "store", "default_cache_dir": "store",
    "undecorate": "undname",
}


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_WHERE))


__all__ = [
    "Pdb", "MsfFile", "PublicSymbol", "Procedure", "SectionHeader", "ModuleInfo", "SymbolHit",
    "SymbolPath", "LocalStore", "Attempt", "default_cache_dir",
    "SymbolServer", "NegativeCache", "RunBudget", "FetchResult", "network_disabled",
    "Resolver", "Resolution", "ModuleSymbols", "open_image",
    "Cabinet", "extract_single", "UnsafeNameError", "check_name", "pdb_key", "image_key", "undecorate",
]
