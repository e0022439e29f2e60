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
from .symbolize import Resolution, Resolver, SymbolPath

__version__ = "0.1.0"

__all__ = ["open", "analyze", "Dump", "Bugcheck", "DumpHeader", "ExceptionRecord", "Context", "Frame", "Module",
           "ModuleList", "Stack", "SymbolPath", "Resolver", "Resolution", "DumpError", "DumpWarning",
           "__version__"]
