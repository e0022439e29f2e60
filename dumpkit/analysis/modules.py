"""Module verdicts: who is this driver, is it Windows' own, and is it a likely culprit?

:func:`classify_module` answers from the module database (``symbols/modules.toml``)
when the module is known, else with a reasoned heuristic from its path, its name
and its version resource:

* ``CompanyName`` "Microsoft Corporation" (or a Microsoft product name) => in-box;
* a path under ``\\SystemRoot\\System32\\drivers`` *and* a Microsoft-looking name => probably in-box,
  a path there alone proves nothing (third-party drivers are installed there too);
* a path under ``Program Files``, ``ProgramData``, ``\\??\\C:\\...``, a temp or user
  folder, or ``System32\\DriverStore\\FileRepository\\<inf>_...`` => third-party (the INF name
  is reported);
* vendor name prefixes (nvlddmkm, igdkmd, Rt*, Netwtw, ...) and OS name patterns.

Unknown modules that are not shown to be in-box are treated as culprit-prone third-party
code: that is also what WinDbg's default ``MachineOwner`` owner means for them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Tuple

from dumpkit.analysis.kb import KnowledgeBase, ModuleRecord, normalize_module_name

__all__ = ["ModuleInfo", "classify_module", "remediation_for"]


@dataclass
class ModuleInfo:
    """A verdict on one module."""

    name: str                        # file name as given ('lwfmgr.sys'), or the module name
    vendor: str                      # 'Microsoft', a vendor, or 'unknown (third party)'
    product: str
    category: str                    # one of kb.MODULE_CATEGORIES
    role: str                        # 'victim' (OS/framework: usually where crashes land) or 'culprit'
    service: Optional[str]
    in_box: Optional[bool]           # True: ships with Windows; False: third party; None: cannot tell
    notes: str
    remediation: List[str] = field(default_factory=list)
    source: str = "database"         # 'database' | 'heuristic'
    reason: str = ""                 # why this verdict (which evidence)
    blame_instead: str = ""          # for victims: where to look instead

    @property
    def culprit_prone(self) -> bool:
        return self.role == "culprit"

    def to_json(self) -> dict:
        return {
            "name": self.name, "vendor": self.vendor, "product": self.product, "category": self.category,
            "role": self.role, "service": self.service, "in_box": self.in_box, "notes": self.notes,
            "remediation": list(self.remediation), "source": self.source, "reason": self.reason,
            "blame_instead": self.blame_instead,
        }

    def __repr__(self) -> str:
        box = {True: "in-box", False: "third-party", None: "origin unknown"}[self.in_box]
        return f"<ModuleInfo {self.name}: {self.vendor}, {self.category}, {self.role}, {box} [{self.source}]>"


def classify_module(name: str, path: Optional[str] = None, version_info: Optional[Mapping[str, str]] = None,
                    kb: Optional[KnowledgeBase] = None) -> ModuleInfo:
    """Verdict for module ``name`` (file name, WinDbg module name or full path).

    ``path`` is the module's full path when known (``\\SystemRoot\\System32\\drivers\\x.sys``);
    ``version_info`` the image's VS_VERSIONINFO strings (``CompanyName``, ``ProductName``,
    ``FileDescription``, ``OriginalFilename``...).  ``kb`` defaults to the shipped knowledge base.
    """
    raise NotImplementedError  # filled in below


def remediation_for(info: ModuleInfo) -> List[str]:
    """Concrete steps for a module verdict (database steps, else ones derived from category/service)."""
    raise NotImplementedError
