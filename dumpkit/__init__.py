"""dumpkit: Windows kernel crash-dump triage from Python.

>>> import dumpkit
>>> d = dumpkit.open("fixtures/samples/case2.dmp")      # doctest: +SKIP
>>> d.bugcheck, d.modules.find(d.bugcheck.parameters[1])  # doctest: +SKIP
"""
from __future__ import annotations

from .api import analyze
from .dump import Bugcheck, Dump, open  # noqa: A004 - dumpkit.open is the public entry point
from .errors import *  # noqa: F401,F403
from .errors import DumpError, DumpWarning
from .formats.header import DumpHeader, ExceptionRecord
from .model import Context, Frame, Module, ModuleList, Stack

__version__ = "0.1.0"


def __getattr__(name: str):
    # the symbol-side names load on first use: opening a dump needs none of them
    if name in ("Resolution", "Resolver", "SymbolPath"):
        from . import symbolize
        value = getattr(symbolize, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["open", "analyze", "Dump", "Bugcheck", "DumpHeader", "ExceptionRecord", "Context", "Frame", "Module",
           "ModuleList", "Stack", "SymbolPath", "Resolver", "Resolution", "DumpError", "DumpWarning",
           "__version__"]
