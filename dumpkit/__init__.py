"""dumpkit: Windows kernel crash-dump triage from Python."""
from __future__ import annotations

from .errors import *  # noqa: F401,F403
from .errors import DumpError
from .model import Context, Frame, Module, ModuleList, Stack

__version__ = "0.1.0"
