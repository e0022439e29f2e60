"""Per-bug-check analyzers, as data: ``symbols/analyzers.toml``.

The table says, per bug check (and per subtype, through ordered *cases*), how ``!analyze``
forms FAILURE_BUCKET_ID, where the culprit comes from (the followup frame, a parameter,
the CPU vendor, the hardware...), which context STACK_COMMAND names and whether the bug
check has a faulting instruction worth decoding.  :func:`evaluate` applies it to the
:class:`Facts` of one crash and returns a :class:`Verdict`.

>>> t = AnalyzerTable.load()
>>> t.for_code(0x1000007E).context
'cxr_param'
>>> evaluate(Facts(code=0x139, parameters=[0x1d, 0, 0, 0], followup="Driver!unknown_function")).bucket
'0x139_1d_INVALID_BALANCED_TREE_Driver!unknown_function'
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from dumpkit.kbpath import kb_file

__all__ = ["Case", "Analyzer", "AnalyzerTable", "Facts", "Verdict", "evaluate", "render_template",
           "CULPRIT_KINDS", "CONTEXT_KINDS", "base_code"]

CULPRIT_KINDS = ("followup", "param_module", "tdr", "cpu_vendor", "hardware", "unknown", "device_stack")
CONTEXT_KINDS = ("cxr_param", "trap", "exception", "thread", "none")
#: code plugins an analyzer may name (``plugin = "..."``; dumpkit.analysis.plugins.PLUGINS implements them)
PLUGIN_KINDS = ("power_irp", "whea_record")
#: where an analyzer's followup comes from (``followup_from``)
FOLLOWUP_SOURCES = ("triage", "top", "user", "context", "caller")
_WHEN_KEYS = {"exception", "fault_kind", "p1", "p2", "p3", "p4", "p2_negative", "field", "field_value", "stack_has", "has",
              "followup", "nested_interrupt", "p1_range"}
_FACT_RE = re.compile(r"\{([A-Za-z0-9_]+(?::[A-Za-z0-9_.]+)?)\}")
_OPT_RE = re.compile(r"\[([^\[\]]*)\]")
STATUS_ACCESS_VIOLATION = 0xC0000005


def base_code(code: int) -> int:
    """0x1000007E -> 0x7E (the ``_M`` codes are the base code with bit 28 set)."""
    if code & 0xF0000000 == 0x10000000 and code & 0x0FFF0000 == 0 and code & 0xFFFF:
        return code & 0xFFFF
    return code


class AnalyzerTableError(ValueError):
    """analyzers.toml is malformed (raised as a KnowledgeBaseError by :meth:`AnalyzerTable.load`)."""


@dataclass(frozen=True)
class Case:
    """One rule of an analyzer: a condition, a bucket template and a culprit source."""

    bucket: str
    when: Mapping[str, Any] = field(default_factory=dict)
    culprit: str = "followup"
    culprit_param: Optional[int] = None
    module: Optional[str] = None
    image: Optional[str] = None
    name: str = ""
    why: Optional[str] = None           # dumpkit's reason when no frame is to blame ('unknown', 'hardware')
    remediation: Tuple[str, ...] = ()   # what to do then


@dataclass(frozen=True)
class Analyzer:
    """What ``!analyze`` does for a set of bug check codes."""

    codes: Tuple[int, ...]              # empty tuple = the '*' entry
    cases: Tuple[Case, ...]
    context: str = "none"
    fault_instruction: bool = False
    followup_skip: Tuple[str, ...] = ()
    subtype_param: int = 1
    subtypes: Mapping[int, str] = field(default_factory=dict)
    livedump: bool = False
    #: where the followup comes from: "triage" (triage.toml owners), "top" (the analysed thread's top frame),
    #: "user" (the first user-mode frame, 0xEF), "context" (the top frame when the stack is the trap's own
    #: context), "caller" (the frame that called the bug-check routine, 0x18)
    followup_from: str = "triage"
    usermode: bool = False              # a user-mode analyzer, keyed by the exception code
    plugin: Optional[str] = None        # a code plugin that dereferences parameters in a dump (PLUGIN_KINDS)

    def subtype_name(self, parameters: Sequence[int], kb: Any = None, code: Optional[int] = None) -> Optional[str]:
        """The name of the subtype parameter's value (this table first, then bugcheck_subtypes.json)."""
        i = self.subtype_param - 1
        if i >= len(parameters):
            return None
        v = parameters[i]
        if v in self.subtypes:
            return self.subtypes[v]
        if kb is None and code is not None and i == 0:
            try:
                from .kb import KnowledgeBase
                kb = KnowledgeBase.load()
            except Exception:  # the KB is optional here
                kb = None
        if kb is not None and code is not None and i == 0:
            try:
                sub = kb.subtype(code, v)
            except Exception:  # the KB is optional here
                sub = None
            if sub is not None and getattr(sub, "name", None):
                return str(sub.name).replace("FAST_FAIL_", "")
        return None


_DEFAULT = Analyzer(codes=(), cases=(Case(bucket="0x{code}_{followup}", name="default"),))
_FALLBACK_TABLE: Dict[int, Analyzer] = {}


class AnalyzerTable:
    """The loaded table: overrides, per-code analyzers and the live-dump default."""

    _cache: Dict[str, "AnalyzerTable"] = {}
    _lock = threading.Lock()

    def __init__(self, overrides: Sequence[Case], analyzers: Sequence[Analyzer]) -> None:
        self.overrides = tuple(overrides)
        self.analyzers = tuple(analyzers)
        self.sources: List[str] = []        # the files this table was read from (shipped first, then overlays)
        self._by_code: Dict[Tuple[int, bool], Analyzer] = {}
        self._lkd_default: Optional[Analyzer] = None
        self._user: Dict[int, Analyzer] = {}
        self._user_default: Optional[Analyzer] = None
        for a in self.analyzers:
            if a.usermode:
                if not a.codes and self._user_default is None:      # codes = ["*"]: any other exception code
                    self._user_default = a
                for c in a.codes:
                    self._user.setdefault(c & 0xFFFFFFFF, a)
                continue
            if not a.codes:
                if a.livedump and self._lkd_default is None:      # the first '*' entry wins (an overlay's)
                    self._lkd_default = a
                continue
            for c in a.codes:
                self._by_code.setdefault((c, a.livedump), a)

    @classmethod
    def load(cls, path: Optional[Path] = None, *, reload: bool = False,
             overlays: Optional[Sequence[Any]] = None) -> "AnalyzerTable":
        """Load (and cache) ``analyzers.toml``; errors name the file and the entry.

        The shipped table (``path`` None) gets the user's ``analyzers.toml`` files merged over it:
        from the folders of ``$DUMPKIT_KB_PATH``, the command line's ``--kb`` and ``overlays``
        (:mod:`dumpkit.analysis.kb_overlay`), later folders winning.  A user analyzer replaces the
        shipped one for every code it lists; a user ``[[override]]`` replaces the shipped one with
        the same ``name`` and the others are added (before the shipped ones).
        """
        p = Path(path) if path is not None else kb_file("analyzers.toml")
        dirs: List[Path] = []
        if path is None:
            from .kb_overlay import overlay_dirs
            dirs = [d for d in overlay_dirs([str(o) for o in overlays or ()]) if (d / "analyzers.toml").is_file()]
        key = str(p)
        if dirs:
            from .kb_overlay import overlay_key
            key += repr(overlay_key(dirs))
        with cls._lock:
            if not reload and key in cls._cache:
                return cls._cache[key]
        table = cls._from_file(p)
        for d in dirs:
            table = table.merged(cls._from_file(d / "analyzers.toml"))
        with cls._lock:
            cls._cache[key] = table
        return table

    @classmethod
    def _from_file(cls, p: Path) -> "AnalyzerTable":
        from .kb import KnowledgeBaseError, _read_toml
        raw = _read_toml(p)          # parsed once, then kept as JSON in the user cache (fast start-up)
        try:
            table = cls.from_dict(raw)
        except AnalyzerTableError as e:
            raise KnowledgeBaseError(f"{p.name}: {e}", path=str(p)) from None
        table.sources = [str(p)]
        return table

    def merged(self, user: "AnalyzerTable") -> "AnalyzerTable":
        """This table with ``user``'s entries over it (see :meth:`load`)."""
        mine = {c.name for c in user.overrides if c.name}
        overrides = list(user.overrides) + [c for c in self.overrides if not c.name or c.name not in mine]
        out = AnalyzerTable(overrides, list(user.analyzers) + list(self.analyzers))
        out.sources = self.sources + user.sources
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "AnalyzerTable":
        if raw.get("schema") != 1:
            raise AnalyzerTableError("schema must be 1")
        overrides = [_case(c, f"override {i}") for i, c in enumerate(raw.get("override", []))]
        analyzers = []
        for i, a in enumerate(raw.get("analyzer", [])):
            where = f"analyzer {i} ({a.get('codes')})"
            if not isinstance(a, dict):
                raise AnalyzerTableError(f"{where}: not a table")
            codes_raw = a.get("codes")
            if not isinstance(codes_raw, list) or not codes_raw:
                raise AnalyzerTableError(f"{where}: 'codes' must be a non-empty list")
            codes = () if codes_raw == ["*"] else tuple(_hex(c, where) for c in codes_raw)
            cases = tuple(_case(c, f"{where} case {j}") for j, c in enumerate(a.get("case", [])))
            if not cases:
                raise AnalyzerTableError(f"{where}: no [[analyzer.case]]")
            ctx = a.get("context", "none")
            if ctx not in CONTEXT_KINDS:
                raise AnalyzerTableError(f"{where}: context {ctx!r} is not one of {CONTEXT_KINDS}")
            sp = a.get("subtype_param", 1)
            if sp not in (1, 2, 3, 4):
                raise AnalyzerTableError(f"{where}: subtype_param must be 1..4")
            subs = {_hex(k, where): str(v) for k, v in dict(a.get("subtypes", {})).items()}
            plugin = a.get("plugin")
            if plugin is not None and plugin not in PLUGIN_KINDS:
                raise AnalyzerTableError(f"{where}: plugin {plugin!r} is not one of {PLUGIN_KINDS}")
            analyzers.append(Analyzer(codes=codes, cases=cases, context=ctx,
                                      fault_instruction=bool(a.get("fault_instruction", False)),
                                      followup_skip=tuple(str(m).lower() for m in a.get("followup_skip", [])),
                                      subtype_param=sp, subtypes=subs, livedump=bool(a.get("livedump", False)),
                                      followup_from=_followup_from(a.get("followup_from", "triage"), where),
                                      usermode=bool(a.get("usermode", False)), plugin=plugin))
        return cls(overrides, analyzers)

    def for_exception(self, exception_code: Optional[int]) -> Optional[Analyzer]:
        """The user-mode analyzer for an exception code, or None."""
        if exception_code is None:
            return None
        return self._user.get(exception_code & 0xFFFFFFFF) or self._user_default

    def for_code(self, code: Optional[int], livedump: bool = False) -> Analyzer:
        """The analyzer for a bug check (``_M`` codes use their base code); a plain default otherwise."""
        if code is None:
            return _DEFAULT
        b = base_code(code)
        a = self._by_code.get((b, True)) if livedump else None
        if a is None:
            a = self._by_code.get((b, False))
        if a is None:
            a = self._by_code.get((b, True))
        if a is None and livedump and self._lkd_default is not None:
            a = self._lkd_default
        return a or _DEFAULT


def _followup_from(v: Any, where: str) -> str:
    if v not in FOLLOWUP_SOURCES:
        raise AnalyzerTableError(f"{where}: followup_from must be one of {FOLLOWUP_SOURCES}")
    return str(v)


def _hex(v: Any, where: str) -> int:
    try:
        return int(str(v), 16) if not isinstance(v, int) else v
    except ValueError:
        raise AnalyzerTableError(f"{where}: {v!r} is not a hex code") from None


def _case(c: Any, where: str) -> Case:
    if not isinstance(c, dict):
        raise AnalyzerTableError(f"{where}: not a table")
    b = c.get("bucket")
    if not isinstance(b, str) or not b:
        raise AnalyzerTableError(f"{where}: 'bucket' must be a non-empty string")
    if b.count("[") != b.count("]"):
        raise AnalyzerTableError(f"{where}: unbalanced [ ] in bucket {b!r}")
    when = dict(c.get("when", {}))
    bad = set(when) - _WHEN_KEYS
    if bad:
        raise AnalyzerTableError(f"{where}: unknown condition(s) {sorted(bad)}; known: {sorted(_WHEN_KEYS)}")
    cul = c.get("culprit", "followup")
    if cul not in CULPRIT_KINDS:
        raise AnalyzerTableError(f"{where}: culprit {cul!r} is not one of {CULPRIT_KINDS}")
    cp = c.get("culprit_param")
    if cp is not None and cp not in (1, 2, 3, 4):
        raise AnalyzerTableError(f"{where}: culprit_param must be 1..4")
    why = c.get("why")
    if why is not None and (not isinstance(why, str) or not why.strip()):
        raise AnalyzerTableError(f"{where}: 'why' must be a non-empty string")
    rem = c.get("remediation", [])
    if not isinstance(rem, list) or not all(isinstance(r, str) and r.strip() for r in rem):
        raise AnalyzerTableError(f"{where}: 'remediation' must be a list of non-empty strings")
    return Case(bucket=b, when=when, culprit=cul, culprit_param=cp, module=c.get("module"), image=c.get("image"),
                name=str(c.get("name", "")), why=why, remediation=tuple(rem))


# ---------------------------------------------------------------------------------------------
@dataclass
class Facts:
    """What is known about one crash, as the analyzers need it."""

    code: Optional[int] = None
    parameters: Sequence[int] = ()
    exception_code: Optional[int] = None
    access: Optional[str] = None                 # 'read' | 'write' | 'execute'
    fault_kind: Optional[str] = None
    region: Optional[str] = None
    frames: Sequence[Any] = ()
    process: Optional[str] = None
    status: Optional[str] = None
    fields: Mapping[str, str] = field(default_factory=dict)
    followup: str = ""                           # 'module!function' or ''
    followup_strength: Optional[str] = None      # 'definite' | 'maybe' | 'last' | 'fallback' | 'none'
    cpu_vendor: Optional[str] = None
    device_image: Optional[str] = None           # 0x9F: IMAGE_NAME of the device stack (the PDO's driver)
    device_module: Optional[str] = None          # its MODULE_NAME (default: the image without extension)
    fdo: Optional[str] = None                    # 0x9F: the driver the blocked IRP is pending in
    power: Optional[str] = None                  # 'up' / 'down'
    param_module: Optional[Tuple[str, str]] = None   # (module, image) containing the culprit parameter
    procs: Optional[int] = None
    livedump: bool = False
    usermode: bool = False
    address: Optional[int] = None                # the referenced address (user-mode pointer class)
    operand: Optional[Tuple[bool, bool]] = None  # faulting memory operand: (an unscaled register is 0, displacement)
    followup_image: str = ""                     # 'AccessV.exe!main' (user-mode buckets keep the extension)
    wrong_symbols: bool = False                  # the debugger said its symbols for an OS module are wrong
    exception_parameters: Sequence[int] = ()     # a user-mode exception's ExceptionInformation
    kb: Any = None

    @property
    def params(self) -> List[int]:
        p = [int(x) & 0xFFFFFFFFFFFFFFFF for x in list(self.parameters)[:4]]
        return p + [0] * (4 - len(p))


@dataclass
class Verdict:
    """The analyzer's result: the bucket, and where MODULE_NAME / IMAGE_NAME come from."""

    bucket: str
    culprit: str                       # one of CULPRIT_KINDS
    module: Optional[str]              # fixed MODULE_NAME (hardware, CPU vendor, Unknown_Module), else None
    image: Optional[str]
    analyzer: Analyzer
    case: Case
    bucket_class: str = ""             # the bucket without its followup (ends in '_')
    culprit_param: Optional[int] = None


def _stack_has(frames: Sequence[Any], patterns: Sequence[str]) -> bool:
    for f in frames:
        mod = (getattr(f, "module", None) or "").lower()
        sym = (getattr(f, "symbol", None) or "").lower()
        if not mod:
            continue
        for pat in patterns:
            pm, _, pf = pat.lower().partition("!")
            if pm != mod:
                continue
            if pf.endswith("*") and sym.startswith(pf[:-1]) or sym == pf:
                return True
    return False


_INTERRUPT_PATTERNS = ("nt!KiInterruptDispatch*", "nt!KiCallInterruptServiceRoutine*", "nt!KiInterruptSubDispatch*",
                       "nt!KiChainedDispatch*", "nt!KiInterruptMessageDispatch*", "hal!HalpInterrupt*")


def _nested_interrupt(frames: Sequence[Any]) -> bool:
    """True when, below the interrupt that reported the timeout (the clock tick on top), the stack
    is inside another interrupt's dispatch: the processor was running an ISR, not a DPC."""
    groups = 0
    inside = False
    for f in frames:
        hit = _stack_has([f], _INTERRUPT_PATTERNS)
        if hit and not inside:
            groups += 1
        inside = hit
    return groups >= 2


def _holds(when: Mapping[str, Any], facts: Facts, analyzer: Optional["Analyzer"] = None) -> bool:
    p = facts.params
    for k, v in when.items():
        if k == "exception":
            want = str(v)
            neg = want.startswith("!")
            code = int(want.lstrip("!"), 16)
            have = facts.exception_code
            ok = have is not None and (have & 0xFFFFFFFF) == code
            if ok == neg:
                return False
        elif k == "fault_kind":
            if facts.fault_kind not in list(v):
                return False
        elif k in ("p1", "p2", "p3", "p4"):
            if p[int(k[1]) - 1] not in [int(str(x), 16) for x in v]:
                return False
        elif k == "p1_range":
            lo, hi = (int(str(x), 16) for x in v)
            if not lo <= p[0] <= hi:
                return False
        elif k == "p2_negative":
            neg = bool(p[1] & 0x8000000000000000) or bool(p[1] & 0xFFFF_FFFF_0000_0000 == 0 and p[1] & 0x80000000) \
                or bool(p[1] & 0xFFFF_FFFF_FFFF_0000 == 0 and p[1] & 0x8000)
            if bool(neg) != bool(v):
                return False
        elif k == "field":
            if not str(facts.fields.get(str(v), "")).strip():
                return False
        elif k == "field_value":
            name = str(when.get("field", ""))
            words = str(facts.fields.get(name, "")).split()
            if not words or words[0].upper() != str(v).upper():
                return False
        elif k == "stack_has":
            if not _stack_has(facts.frames, list(v)):
                return False
        elif k == "has":
            for name in v:
                if name == "subtype":
                    if analyzer is None or not analyzer.subtype_name(p, facts.kb, facts.code):
                        return False
                elif not getattr(facts, str(name), None):
                    return False
        elif k == "nested_interrupt":
            if _nested_interrupt(facts.frames) != bool(v):
                return False
        elif k == "followup":
            if facts.followup_strength != v or not facts.followup:
                return False
    return True


def _values(facts: Facts, analyzer: Analyzer, case: Case) -> Dict[str, Optional[str]]:
    p = facts.params
    b = base_code(facts.code) if facts.code is not None else None
    exc = facts.exception_code
    vals: Dict[str, Optional[str]] = {
        "code": f"{b:X}" if b is not None else None,
        "code_lc": f"{b:x}" if b is not None else None,
        "exc": f"{exc & 0xFFFFFFFF:x}" if exc is not None else None,
        "EXC": f"{exc & 0xFFFFFFFF:X}" if exc is not None else None,
        "rw": {"read": "R", "write": "W", "execute": "X"}.get(facts.access or "", "R"),
        "region": facts.region or "(null)",
        "process": facts.process,
        "status": facts.status,
        "subtype": analyzer.subtype_name(p, facts.kb, facts.code),
        "followup": facts.followup,
        "vendor": facts.cpu_vendor,
        "power": f"POWER_{facts.power.upper()}" if facts.power else None,
        "fdo": facts.fdo,
        "procs": str(facts.procs) if facts.procs else None,
        "dpc_isr": None,
        "followup_image": facts.followup_image,
        "fast_fail": _fast_fail_name(facts),
        "clr_hresult": _clr_hresult(facts),
        "pointer_class": _pointer_class(facts.address, facts.access, facts.operand),
        "avrf": "AVRF" if str(facts.fields.get("APPLICATION_VERIFIER_LOADED", "")).split()[:1] == ["1"] else None,
        "vrf": "VRF" if _driver_verifier(facts.fields) else None,
    }
    for i in range(4):
        vals[f"p{i + 1}"] = f"{p[i]:x}"
        vals[f"P{i + 1}"] = f"{p[i]:X}"
        vals[f"p{i + 1}_dec"] = str(p[i])
    img = case.image
    mod = case.module
    if case.culprit in ("param_module", "tdr") and facts.param_module:
        mod, img = facts.param_module
    elif case.culprit == "device_stack" and facts.device_image:
        img = facts.device_image
        mod = facts.device_module or facts.device_image.rsplit(".", 1)[0]
    elif case.culprit == "cpu_vendor" and facts.cpu_vendor:
        mod, img = facts.cpu_vendor, facts.cpu_vendor + ".sys"
    vals["image"] = img
    vals["module"] = mod
    return vals


def _fast_fail_name(facts: "Facts") -> Optional[str]:
    """The FAST_FAIL_* code's name (STACK_COOKIE_CHECK_FAILURE) of a user-mode c0000409: ExceptionInformation[0]."""
    v = _exception_information(facts, 0xC0000409)
    if v is None:
        return None
    from .bucket import FAST_FAIL_NAMES           # bucket.py imports this module: resolved at call time
    return FAST_FAIL_NAMES.get(v)


def _exception_information(facts: "Facts", code: int) -> Optional[int]:
    """ExceptionInformation[0] of a user-mode exception with this code, else None."""
    if facts.exception_code is None or facts.exception_code & 0xFFFFFFFF != code or not facts.exception_parameters:
        return None
    return int(facts.exception_parameters[0])


def _clr_hresult(facts: "Facts") -> Optional[str]:
    """The HRESULT a managed exception (e0434352) carries in ExceptionInformation[0]: 80131509."""
    v = _exception_information(facts, 0xE0434352)
    return None if v is None else f"{v & 0xFFFFFFFF:x}"


def _driver_verifier(fields: Mapping[str, str]) -> bool:
    """Driver Verifier watches the crash: the referenced address is in special pool (``WRITE_ADDRESS:
    ffffcf81085c9000 Special pool``).  (DEFAULT_BUCKET_ID VERIFIER_ENABLED_* says so too, but it is WinDbg's
    own preliminary conclusion, which the analysis does not read.)"""
    return any("special pool" in str(fields.get(k, "")).lower() for k in ("READ_ADDRESS", "WRITE_ADDRESS"))


def _pointer_class(address: Optional[int], access: Optional[str],
                   operand: Optional[Tuple[bool, bool]] = None) -> Optional[str]:
    """User-mode access-violation class: NULL_POINTER_WRITE, NULL_CLASS_PTR_READ, INVALID_POINTER_EXECUTE...

    With the faulting instruction's memory operand known (``operand`` = (an unscaled register is 0, has a
    displacement)) the pointer register decides, as in real outputs: a NULL base or unscaled index is
    NULL_POINTER, NULL_CLASS_PTR with a displacement ('[eax+edx]' with edx = 0 writing 00533140 is
    NULL_POINTER_WRITE; '[rcx+50h]' with rcx = 0 is NULL_CLASS_PTR_READ); a non-NULL pointer is INVALID_POINTER
    ('[rcx+8]' with rcx = 0x30 reading 0x38), except a first-page address reached with no displacement
    ('[ecx]' with ecx = 0xf9c: NULL_CLASS_PTR_WRITE).  Without it the address alone decides.
    """
    if address is None:
        return None
    how = {"write": "WRITE", "execute": "EXECUTE"}.get(access or "", "READ")
    if how == "EXECUTE":
        # executing address 0 is an invalid pointer; executing a real but non-executable page is DEP
        return "INVALID_POINTER_EXECUTE" if address == 0 else "SOFTWARE_NX_FAULT"
    if address == 0:
        return f"NULL_POINTER_{how}"
    if operand is not None:
        null_reg, disp = operand
        if null_reg:
            return f"NULL_CLASS_PTR_{how}" if disp else f"NULL_POINTER_{how}"
        return f"NULL_CLASS_PTR_{how}" if address < 0x1000 and not disp else f"INVALID_POINTER_{how}"
    if address < 0x1000:
        # a small offset from NULL inside the first page: a member of a NULL object
        # (a write to 0x43cb is already INVALID_POINTER_WRITE)
        return f"NULL_CLASS_PTR_{how}"
    if _fill_pattern(address):
        # a pointer made of one repeated byte is a fill pattern, not an address (INVALID_POINTER_READ_FILL_PATTERN_
        # 41414141_c0000005_chrome_child.dll!memcpy, 32-bit Chrome)
        return f"INVALID_POINTER_{how}_FILL_PATTERN_{address:08x}"
    return f"INVALID_POINTER_{how}"


def _fill_pattern(address: int) -> bool:
    """One byte repeated over 32 (or 64) bits, other than 00 and ff: 41414141, c0c0c0c0, abababababababab."""
    raw = address.to_bytes(8, "little")
    word = raw[:4] if address <= 0xFFFFFFFF else raw
    return len(set(word)) == 1 and word[0] not in (0x00, 0xFF)


def render_template(template: str, values: Mapping[str, Optional[str]], fields: Mapping[str, str] = {}) -> str:
    """Fill ``{fact}`` markers; ``[...]`` groups vanish when a fact inside is empty."""
    def get(name: str) -> Optional[str]:
        if name.startswith("field:"):
            v = str(fields.get(name[6:], "")).split()
            return v[0] if v else None
        return values.get(name)

    def opt(m: "re.Match[str]") -> str:
        inner = m.group(1)
        names = _FACT_RE.findall(inner)
        if any(not get(n) for n in names):
            return ""
        return inner

    out = _OPT_RE.sub(opt, template)
    return _FACT_RE.sub(lambda m: get(m.group(1)) or "", out)


def evaluate(facts: Facts, table: Optional[AnalyzerTable] = None) -> Verdict:
    """Apply the table to one crash: the first override or case whose condition holds."""
    if table is None:
        table = AnalyzerTable.load()
    um = table.for_exception(facts.exception_code) if facts.usermode else None
    analyzer = um or table.for_code(facts.code, facts.livedump)
    chosen: Optional[Case] = None
    for c in table.overrides:
        if _holds(c.when, facts, analyzer):
            chosen = c
            break
    if chosen is None:
        for c in analyzer.cases:
            if _holds(c.when, facts, analyzer):
                chosen = c
                break
    if chosen is None:                  # no default case: the plain class
        chosen = _DEFAULT.cases[0]
    # a culprit that must be named by a parameter but could not be: fall back to the followup
    if chosen.culprit in ("param_module", "tdr") and not facts.param_module or \
            chosen.culprit == "cpu_vendor" and not facts.cpu_vendor or \
            chosen.culprit == "device_stack" and not facts.device_image:
        rest = [c for c in analyzer.cases if c is not chosen and c.culprit == "followup" and _holds(c.when, facts, analyzer)]
        chosen = rest[0] if rest else Case(bucket=("LKD_" if analyzer.livedump else "") + "0x{code}_{followup}",
                                           name="fallback")
    vals = _values(facts, analyzer, chosen)
    bucket = render_template(chosen.bucket, vals, facts.fields)
    cls_vals = dict(vals)
    cls_vals["followup"] = ""
    cls = render_template(chosen.bucket, cls_vals, facts.fields)
    if "{followup}" in chosen.bucket:
        cls = cls if cls.endswith("_") else cls + "_"
    if not facts.followup and "{followup}" in chosen.bucket or \
            not facts.followup_image and "{followup_image}" in chosen.bucket:
        bucket = bucket.rstrip("_")
    module, image = chosen.module, chosen.image
    if chosen.culprit in ("param_module", "tdr") and facts.param_module:
        module, image = facts.param_module
    elif chosen.culprit == "cpu_vendor" and facts.cpu_vendor:
        module, image = facts.cpu_vendor, facts.cpu_vendor + ".sys"
    elif chosen.culprit == "device_stack" and facts.device_image:
        image = facts.device_image
        module = facts.device_module or facts.device_image.rsplit(".", 1)[0]
    return Verdict(bucket=bucket or "UNKNOWN", culprit=chosen.culprit, module=module, image=image,
                   analyzer=analyzer, case=chosen, bucket_class=cls, culprit_param=chosen.culprit_param)
