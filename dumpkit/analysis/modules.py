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

from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Tuple

from .kb import KnowledgeBase, normalize_module_name

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


# Windows in-box kernel modules that are commonly on stacks but not in modules.toml (names are facts).
_INBOX_NAMES = frozenset("""
acpi acpiex afd afunix ahcache beep bam bowser cdd cdrom cea cimfs classpnp clfs clipsp cmimcext cng
condrv crashdmp csc dam dfsc disk dumpfve dumpstorport dxgkrnl dxgmms1 dxgmms2 ehstorclass fastfat
fileinfo filecrypt fltmgr fvevol fwpkclnt hdaudbus hdaudio hidclass hidparse hidusb http i8042prt intelpep
intelppm iorate kbdclass kbdhid kdcom ks ksecdd ksecpkg ksthunk luafv mcupdate_authenticamd
mcupdate_genuineintel mmcss monitor mouclass mouhid mountmgr mpsdrv mrxsmb mrxsmb20 msfs msisadrv msrpc
mssecflt mup ndis ndisuio ndiswan ndproxy netbios netbt netio netadaptercx npfs npsvctrig nsiproxy ntfs
null nwifi pacer partmgr pci pcw pdc peauth portcls processr pshed rasl2tp raspppoe raspptp rassstp rdbss
rdyboost refs rspndr sdbus sdstor serial serenum sgrmagent smbdirect spaceport srv2 srvnet storahci
stornvme storport swenum tcpip tdi tdx tm tpm tunnel ucx01000 ucmcx0101 udfs umbus umpass usbccgp usbehci
usbhub usbhub3 usbport usbstor usbvideo usbxhci vdrvroot verifier vhdmp vmbus volmgr volmgrx volsnap
volume vwififlt vwifibus wcifs wcnfs wdf01000 wdfldr wfplwfs wimmount win32k win32kbase win32kfull
wmilib wof wpprecorder ws2ifsl wtd xboxgip hal nt werkernel bindflt storqosflt iorate npsvctrig
bthport bthusb bthenum rfcomm bthmini acpitime wdiwifi wificx netvsc storvsc
""".split())

# third-party vendor name prefixes (file-name conventions; lower-case)
_VENDOR_PREFIXES: Tuple[Tuple[str, str, str], ...] = (
    ("nvlddmkm", "NVIDIA", "display"), ("nv", "NVIDIA", "other"), ("atik", "AMD", "display"),
    ("amdkm", "AMD", "display"), ("igdkm", "Intel", "display"), ("iastor", "Intel", "storage"),
    ("netwtw", "Intel", "NDIS miniport"), ("netwbw", "Intel", "NDIS miniport"), ("rtwlan", "Realtek", "NDIS miniport"),
    ("rtkvhd", "Realtek", "audio"), ("rts", "Realtek", "storage"), ("rt", "Realtek (probably)", "other"),
    ("bcm", "Broadcom", "other"), ("qca", "Qualcomm", "NDIS miniport"), ("athw", "Qualcomm Atheros", "NDIS miniport"),
    ("mtkwl", "MediaTek", "NDIS miniport"), ("mrvl", "Marvell", "NDIS miniport"), ("tm", "Trend Micro (probably)", "security"),
    ("asw", "Avast", "security"), ("avg", "AVG", "security"), ("kl", "Kaspersky (probably)", "security"),
    ("mfe", "McAfee / Trellix", "security"), ("vbox", "Oracle VirtualBox", "virtualization"),
    ("vm", "VMware (probably)", "virtualization"), ("lg", "Logitech (probably)", "input"), ("rz", "Razer", "input"),
)

_THIRD_PARTY_PATH_HINTS = ("\\program files", "\\programdata\\", "\\users\\", "\\temp\\", "\\appdata\\")


def _norm_path(path: str) -> str:
    p = path.replace("/", "\\").lower()
    for root in ("\\systemroot\\", "\\??\\c:\\windows\\", "c:\\windows\\", "%systemroot%\\", "\\windows\\"):
        if p.startswith(root):
            return "<windows>\\" + p[len(root):]
    if p.startswith("system32\\"):
        return "<windows>\\" + p
    return p


def _file_name(name: str) -> str:
    return name.replace("/", "\\").rsplit("\\", 1)[-1]


def classify_module(name: str, path: Optional[str] = None, version_info: Optional[Mapping[str, str]] = None,
                    kb: Optional[KnowledgeBase] = None) -> ModuleInfo:
    """Verdict for module ``name`` (file name, WinDbg module name or full path).

    ``path`` is the module's full path when known (``\\SystemRoot\\System32\\drivers\\x.sys``);
    ``version_info`` the image's VS_VERSIONINFO strings (``CompanyName``, ``ProductName``,
    ``FileDescription``, ``OriginalFilename``...).  ``kb`` defaults to the shipped knowledge base.
    """
    if kb is None:
        kb = KnowledgeBase.load()
    if path is None and ("\\" in name or "/" in name):
        path = name
    display = _file_name(name)
    vi = {str(k).lower(): str(v) for k, v in (version_info or {}).items() if v is not None}
    company = vi.get("companyname", "").strip()
    product_vi = vi.get("productname", "").strip()

    rec = kb.module(display)
    if rec is not None:
        reason = f"known module ({rec.file}) in the dumpkit module database"
        notes = rec.notes
        if company and rec.in_box and "microsoft" not in company.lower():
            notes = (notes + " " if notes else "") + \
                f"Warning: the image's CompanyName is {company!r}, not Microsoft: this may be a different file with the same name."
            reason += f"; version resource says {company!r}"
        info = ModuleInfo(display, rec.vendor, rec.product, rec.category, rec.role, rec.service, rec.in_box, notes,
                          list(rec.remediation), "database", reason, rec.blame_instead)
        if not info.remediation:
            info.remediation = remediation_for(info)
        return info

    evidence: List[str] = []
    in_box: Optional[bool] = None
    vendor = ""
    category = "other"
    stem = normalize_module_name(display)

    # 1. version resource (strongest evidence when present)
    if company:
        if "microsoft" in company.lower():
            in_box, vendor = True, "Microsoft"
            evidence.append(f"CompanyName {company!r}")
        else:
            in_box, vendor = False, company
            evidence.append(f"CompanyName {company!r} is not Microsoft")
    elif "microsoft" in product_vi.lower() and "windows" in product_vi.lower():
        in_box, vendor = True, "Microsoft"
        evidence.append(f"ProductName {product_vi!r}")

    # 2. where it was loaded from
    if path:
        np = _norm_path(path)
        if "\\driverstore\\filerepository\\" in np:
            pkg = np.split("\\driverstore\\filerepository\\", 1)[1].split("\\", 1)[0]
            evidence.append(f"loaded from the driver store (package {pkg}), i.e. installed from an INF package")
            if in_box is None:
                in_box = False
        elif any(h in np for h in _THIRD_PARTY_PATH_HINTS) or (np[1:3] == ":\\" and not np.startswith("<windows>")):
            evidence.append(f"loaded from outside the Windows folder ({path})")
            if in_box is None:
                in_box = False
        elif np.startswith("<windows>\\system32\\drivers\\") or np.startswith("<windows>\\system32\\"):
            evidence.append("loaded from System32\\drivers (third-party drivers are installed there too, so this alone proves nothing)")

    # 3. the name
    if stem in _INBOX_NAMES:
        evidence.append(f"{stem} is a Windows in-box module name")
        if in_box is None:
            in_box, vendor = True, "Microsoft"
    else:
        for prefix, v, cat in _VENDOR_PREFIXES:
            if stem.startswith(prefix):
                evidence.append(f"name prefix '{prefix}' is used by {v}")
                if not vendor:
                    vendor = v
                if category == "other":
                    category = cat
                break

    if in_box:
        role = "victim"
        vendor = vendor or "Microsoft"
        verdict = "in-box Windows component: less often the root cause than third-party code on the same stack"
    else:
        role = "culprit"
        vendor = vendor or "unknown (third party)"
        verdict = ("third-party driver: culprit-prone" if in_box is False else
                   "not known to dumpkit and not shown to be part of Windows: treated as third-party, culprit-prone")
    reason = verdict + (" (" + "; ".join(evidence) + ")" if evidence else " (no path or version information)")
    product = product_vi or vi.get("filedescription", "") or ""
    info = ModuleInfo(display, vendor, product, category, role, None, in_box,
                      "Not in the dumpkit module database.", [], "heuristic", reason)
    info.remediation = remediation_for(info)
    return info


def remediation_for(info: ModuleInfo) -> List[str]:
    """Concrete steps for a module verdict (database steps, else ones derived from category/service)."""
    if info.remediation:
        return list(info.remediation)
    steps: List[str] = []
    if info.in_box:
        steps.append("Install the latest Windows cumulative update (in-box drivers are serviced through Windows Update).")
        if info.blame_instead:
            steps.append(f"Look at {info.blame_instead}.")
        else:
            steps.append("Look for a third-party driver that calls into this module lower on the stack.")
        return steps
    who = info.vendor if info.vendor and not info.vendor.startswith("unknown") else \
        "its vendor (see CompanyName/ProductName in the version resource, the Authenticode signer, or the INF in DriverStore)"
    steps.append(f"Identify and update {info.name} from {who}, or uninstall the software that installed it.")
    if info.category in ("NDIS lightweight filter", "WFP callout", "NDIS protocol"):
        steps.append("Unbind the filter from the network adapters (adapter properties or Disable-NetAdapterBinding) to test.")
    if info.category in ("file-system filter",):
        steps.append("List minifilters with 'fltmc filters' and unload or uninstall this one to test.")
    # disabling the service (Start=4) is advice only where the crash happens while the driver loads at boot
    # or during a feature upgrade: the analysis engine adds it when the load context or the setup logs show that
    return steps
