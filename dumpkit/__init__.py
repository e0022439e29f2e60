"""dumpkit: Windows kernel crash-dump triage from Python.

>>> import dumpkit
>>> d = dumpkit.open("fixtures/samples/case2_lwfmgr.dmp")      # the sample in a source checkout
>>> d.bugcheck.code, d.modules.find(d.bugcheck.parameters[1]).name
(126, 'ndis.sys')
>>> print(dumpkit.analyze(d))                                   # doctest: +ELLIPSIS
Crash:    0x7E SYSTEM_THREAD_EXCEPTION_NOT_HANDLED
...
Culprit:  lwfmgr.sys ...

Pasted WinDbg text works the same way: ``dumpkit.analyze(open("analyze.txt").read())``.
The command line is ``dumpkit`` (``dumpkit --help``); docs/ has the manual.
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
