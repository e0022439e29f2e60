"""dumpkit's knowledge base: bug check catalog, module database and triage rules.

The data lives in the repository's ``symbols/`` folder (``dumpkit/_kb`` in a wheel)
and is located with :func:`dumpkit.kbpath.kb_file`:

* ``bugchecks.json``        every documented bug check / live-dump code, its symbolic
  name, a short description and one line per parameter with the parameter's *role*
  (which argument is the referenced address, the faulting IP, the CONTEXT, ...), and
  the bucket-class rule ``!analyze`` applies to it;
* ``bugcheck_subtypes.json`` per-P1 meanings for codes whose parameters depend on P1;
* ``modules.toml``          driver/module database (vendor, category, role, remediation);
* ``triage.toml``           ``module!function`` owner rules with triage.ini semantics.

Everything is validated when loaded: a malformed file raises
:class:`KnowledgeBaseError` naming the file and the offending entry.

>>> kb = KnowledgeBase.load()
>>> kb.bugcheck(0x1000007E).name
'SYSTEM_THREAD_EXCEPTION_NOT_HANDLED_M'
>>> kb.module("ntoskrnl.exe").category
'OS core'
"""
from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from dumpkit.errors import AnalysisError
from dumpkit.kbpath import kb_file

__all__ = [
    "KnowledgeBaseError",
    "PARAM_ROLES",
    "BUCKET_RULES",
    "BugcheckParam",
    "SubtypeInfo",
    "BugcheckInfo",
    "ModuleRecord",
    "TriageRule",
    "RuleMatch",
    "TriageRules",
    "KnowledgeBase",
    "normalize_module_name",
    "parse_code",
]


class KnowledgeBaseError(AnalysisError):
    """A knowledge-base file is missing or malformed (``path`` names the file)."""


#: vocabulary of parameter roles used in bugchecks.json / bugcheck_subtypes.json
PARAM_ROLES: Mapping[str, str] = {
    "address": "the memory address that was referenced (READ_ADDRESS/WRITE_ADDRESS)",
    "irql": "the IRQL at the time of the failure",
    "access": "kind of access: read / write / execute flags",
    "ip": "address of the faulting or offending instruction",
    "exception_code": "NTSTATUS exception code (c0000005 = access violation)",
    "exception_record": "address of an EXCEPTION_RECORD (.exr)",
    "context": "address of a CONTEXT record (.cxr)",
    "trap_frame": "address of a KTRAP_FRAME (.trap)",
    "subtype": "selects the meaning of the other parameters (see the subtype table)",
    "status": "an NTSTATUS or other status/error code",
    "pool": "address of a pool block or pool header",
    "pool_tag": "a pool tag (four characters)",
    "irp": "address of an IRP",
    "device_object": "address of a DEVICE_OBJECT",
    "driver_object": "address of a DRIVER_OBJECT",
    "process": "address of an EPROCESS",
    "thread": "address of an ETHREAD/KTHREAD",
    "lock": "address of a lock",
    "image_name": "address of a (UNICODE_STRING) driver or image name",
    "triage_block": "address of a kernel triage structure (dt it for details)",
    "reserved": "not used / reserved",
}

#: bucket-class rules: how !analyze forms the class part of FAILURE_BUCKET_ID
BUCKET_RULES: Mapping[str, str] = {
    "code": "plain '0x<CODE>_' followed by the followup",
    "av": "always an access violation: 'AV_' (+ '_R_'/'_W_' and region qualifiers)",
    "av_if_exception": "'AV_' when the exception_code parameter is c0000005, else '0x<CODE>_<exception code>_'",
    "p1": "'0x<CODE>_<P1 hex>_' (P1 names the corruption/subtype)",
    "p1_name": "'0x<CODE>_<P1 hex>_<P1 symbolic name>_' (0x139 fast-fail codes)",
    "dpc_isr": "'0x133_DPC_' or '0x133_ISR_' from the watchdog triage data",
    "pnp_irp": "'0x9F_<P1>_' + blocked IRP owner / 'IMAGE_<PDO driver>'",
    "critical_process": "'0xEF_<process>_BUGCHECK_CRITICAL_PROCESS_<status>_'",
    "raised_irql": "'RAISED_IRQL_FAULT' with the process that returned at raised IRQL",
    "verifier": "Driver Verifier: '0xC4_<rule>_' (+ 'XDV'/'VRF' markers)",
}

_CODE_RE = re.compile(r"^0x[0-9A-Fa-f]{1,8}$")
_NAME_RE = re.compile(r"[A-Z0-9_]+")


def parse_code(code: Union[int, str]) -> int:
    """A bug check code as int from ``0x7E``, ``7e``, ``"0x1000007E"`` or an int."""
    if isinstance(code, bool):
        raise TypeError("bug check code must be int or str")
    if isinstance(code, int):
        return code & 0xFFFFFFFF
    s = str(code).strip().lower()
    if s.startswith("0x"):
        s = s[2:]
    try:
        return int(s, 16) & 0xFFFFFFFF
    except ValueError:
        raise ValueError(f"not a bug check code: {code!r}") from None


_NT_ALIASES = {"nt", "ntoskrnl", "ntkrnlmp", "ntkrnlpa", "ntkrpamp", "ntkrla57"}
_HAL_ALIASES = {"hal", "halmacpi", "halacpi", "halaacpi"}


def normalize_module_name(name: str) -> str:
    """Lower-case lookup key for a module: a file name, a WinDbg module name or a path.

    ``'\\SystemRoot\\system32\\ntoskrnl.exe'``, ``'ntkrnlmp.exe'`` and ``'nt'`` all give ``'nt'``;
    ``'NDIS.SYS'`` and ``'ndis'`` give ``'ndis'``.
    """
    base = name.strip().replace("/", "\\").rsplit("\\", 1)[-1].lower()
    if "!" in base:
        base = base.split("!", 1)[0]
    stem = base
    for ext in (".sys", ".exe", ".dll", ".drv", ".efi", ".mui"):
        if base.endswith(ext):
            stem = base[: -len(ext)]
            break
    if stem in _NT_ALIASES:
        return "nt"
    if stem in _HAL_ALIASES:
        return "hal"
    return stem


# ---------------------------------------------------------------------------------------------
# bug checks
class BugcheckParam(NamedTuple):
    """One bug check parameter: ``name`` ('Arg1'..'Arg4'), dumpkit's description, role or None."""

    name: str
    description: str
    role: Optional[str]


@dataclass(frozen=True)
class SubtypeInfo:
    """Meaning of a bug check when its P1 has a given value (e.g. 0x139 P1=0x1d)."""

    code: int
    p1: int
    name: Optional[str]                     # symbolic name when one exists (INVALID_BALANCED_TREE)
    description: str
    parameters: Tuple[BugcheckParam, ...]   # Arg2..Arg4 as they read for this P1 (may be empty)

    def __repr__(self) -> str:
        nm = f" {self.name}" if self.name else ""
        return f"<SubtypeInfo 0x{self.code:X} P1=0x{self.p1:x}{nm}: {self.description}>"


@dataclass(frozen=True)
class BugcheckInfo:
    """A bug check code from the catalog.

    ``code`` is the code asked for (0x1000007E stays 0x1000007E), ``base_code`` the code
    WinDbg normalises it to for BUGCHECK_CODE and buckets (0x7E).
    """

    code: int
    base_code: int
    name: str
    description: str
    parameters: Tuple[BugcheckParam, ...]
    bucket: str = "code"
    kind: str = "bugcheck"                 # 'bugcheck' or 'livedump'
    common: bool = False
    subtypes: Mapping[int, SubtypeInfo] = field(default_factory=dict, compare=False, repr=False)

    @property
    def hex_code(self) -> str:
        """WinDbg's BUGCHECK_CODE spelling: lower-case hex, no 0x, base code (``7e``)."""
        return f"{self.base_code:x}"

    @property
    def bucket_prefix(self) -> str:
        """The ``0x<CODE>`` class spelling used in FAILURE_BUCKET_ID (``0x139``, ``0x9F``)."""
        return f"0x{self.base_code:X}"

    def param(self, role: str) -> Optional[int]:
        """1-based index of the first parameter with ``role`` (e.g. 'context' -> 4 for 0x7E), or None."""
        for i, p in enumerate(self.parameters, 1):
            if p.role == role:
                return i
        return None

    def subtype(self, p1: int) -> Optional[SubtypeInfo]:
        """The per-P1 meaning, or None when the code has no table or P1 is not listed."""
        return self.subtypes.get(int(p1) & 0xFFFFFFFFFFFFFFFF)

    def describe_parameters(self, args: Sequence[int]) -> List[Tuple[str, int, str]]:
        """(``ArgN``, value, text) for up to four argument values, using the P1 subtype if known."""
        sub = self.subtype(args[0]) if args and self.subtypes else None
        out: List[Tuple[str, int, str]] = []
        for i, value in enumerate(list(args)[:4]):
            text = ""
            if i < len(self.parameters):
                text = self.parameters[i].description
            if sub is not None:
                if i == 0:
                    text = sub.description if not sub.name else f"{sub.name}: {sub.description}"
                elif i - 1 < len(sub.parameters) and sub.parameters[i - 1].description:
                    text = sub.parameters[i - 1].description
            out.append((f"Arg{i + 1}", value, text))
        return out

    def __repr__(self) -> str:
        return f"<BugcheckInfo 0x{self.code:X} {self.name}>"


# ---------------------------------------------------------------------------------------------
# modules
MODULE_CATEGORIES = (
    "OS core", "framework", "NDIS lightweight filter", "NDIS miniport", "NDIS protocol", "WFP callout",
    "network stack", "storage", "storage filter", "file system", "file-system filter", "display", "audio",
    "camera/multimedia", "security", "anti-cheat", "virtualization", "USB", "bus/PnP", "power management",
    "input", "utility", "VPN/tunnel", "other",
)
MODULE_ROLES = ("victim", "culprit")


@dataclass(frozen=True)
class ModuleRecord:
    """One entry of modules.toml (a known driver or OS module)."""

    file: str                       # canonical file name, e.g. 'ndis.sys'
    vendor: str
    product: str
    category: str
    role: str                       # 'victim' (framework/OS, usually not the cause) or 'culprit'
    in_box: bool                    # ships with Windows
    service: Optional[str] = None
    aliases: Tuple[str, ...] = ()
    notes: str = ""
    remediation: Tuple[str, ...] = ()
    blame_instead: str = ""         # for victims: who to look at instead
    buckets: Tuple[str, ...] = ()   # typical FAILURE_BUCKET_ID shapes seen in public reports
    patterns: Tuple[str, ...] = ()  # lower-case name prefixes ending in '*' ('netwtw*') for driver families

    @property
    def key(self) -> str:
        return normalize_module_name(self.file)

    def __repr__(self) -> str:
        return f"<ModuleRecord {self.file} {self.vendor} / {self.category} ({self.role})>"


# ---------------------------------------------------------------------------------------------
# triage rules
OWNER_STRENGTH = {"ignore": 0, "last": 1, "maybe": 2, "definite": 3}


@dataclass(frozen=True)
class TriageRule:
    """``module!function = owner`` with trailing ``*`` wildcards (triage.ini semantics).

    ``module`` / ``function`` are lower-cased patterns; a pattern ending in ``*`` is a prefix
    (triage.ini), ``function == '*'`` matches every function of the module.  As a dumpkit
    extension a ``*`` elsewhere (``ki*fault``, ``*$filt$*``) is a glob wildcard; it ranks below a
    prefix pattern with as many literal characters.  Matching is case-insensitive.
    """

    module: str
    function: str
    owner: str
    why: str = ""
    text: str = field(default="", compare=False)   # the pattern as written ('nt!KeBugCheck*')

    @property
    def pattern(self) -> str:
        """The pattern as written in the rule file (or the normalised ``module!function``)."""
        return self.text or f"{self.module}!{self.function}"

    @property
    def strength(self) -> str:
        """'ignore', 'last', 'maybe' or 'definite'."""
        return owner_strength(self.owner)

    @staticmethod
    def _part_score(pat: str, value: str) -> Optional[Tuple[int, int, int]]:
        """(exact?, literal characters matched, prefix-not-glob?) or None when ``pat`` misses ``value``."""
        if "*" not in pat:
            return (2, len(pat), 1) if value == pat else None
        if pat.endswith("*") and "*" not in pat[:-1]:
            prefix = pat[:-1]
            return (1, len(prefix), 1) if value.startswith(prefix) else None
        # dumpkit extension: '*' inside a pattern ('ki*fault', '*$filt$*') is a glob wildcard
        if _glob_match(pat, value):
            return (1, len(pat.replace("*", "")), 0)
        return None

    def score(self, module: str, function: str) -> Optional[Tuple[Tuple[int, int, int], Tuple[int, int, int]]]:
        """Match specificity (module score, function score), or None if the rule does not apply."""
        ms = self._part_score(self.module, module)
        if ms is None:
            return None
        fs = self._part_score(self.function, function)
        if fs is None:
            return None
        return (ms, fs)

    def __repr__(self) -> str:
        return f"<TriageRule {self.pattern}={self.owner}>"


def _glob_match(pat: str, value: str) -> bool:
    """Match ``value`` against ``pat`` where ``*`` is any run of characters (no other metacharacters)."""
    parts = pat.split("*")
    if not value.startswith(parts[0]):
        return False
    pos = len(parts[0])
    for mid in parts[1:-1]:
        j = value.find(mid, pos)
        if j < 0:
            return False
        pos = j + len(mid)
    last = parts[-1]
    return value.endswith(last) and len(value) - len(last) >= pos


def owner_strength(owner: str) -> str:
    """Classify an owner string: 'ignore', 'last' (``last_*``), 'maybe' (``maybe_*``) or 'definite'."""
    o = owner.strip().lower()
    if o == "ignore":
        return "ignore"
    if o.startswith("last_"):
        return "last"
    if o.startswith("maybe_"):
        return "maybe"
    return "definite"


class RuleMatch(NamedTuple):
    """Result of looking a frame up in the rules."""

    owner: str
    strength: str                  # 'ignore' | 'last' | 'maybe' | 'definite'
    rule: Optional[TriageRule]     # None when the default owner applied


class TriageRules:
    """An ordered set of :class:`TriageRule` with ``!owner``-style lookup.

    Precedence (triage.ini): a module match beats a module-wildcard match, then the
    more complete function match wins (exact > longer prefix > ``*``).  With no rule the
    ``default_owner`` (``MachineOwner``) applies, which is a *definite* owner.
    """

    def __init__(self, rules: Iterable[TriageRule] = (), default_owner: str = "MachineOwner") -> None:
        self.rules: List[TriageRule] = list(rules)
        self.default_owner = default_owner
        self._by_module: Dict[str, List[TriageRule]] = {}
        self._wild: List[TriageRule] = []
        for r in self.rules:
            if "*" in r.module:
                self._wild.append(r)
            else:
                self._by_module.setdefault(r.module, []).append(r)

    @classmethod
    def parse(cls, text: str, default_owner: str = "MachineOwner") -> "TriageRules":
        """Rules from triage.ini-style lines ``Module[!Function]=Owner`` (``;`` comments)."""
        rules: List[TriageRule] = []
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.split(";", 1)[0].strip()
            if not line or line.startswith("["):
                continue
            if "=" not in line:
                raise KnowledgeBaseError(f"triage rule line {lineno} has no '=': {raw!r}",
                                         expected="Module[!Function]=Owner")
            pat, owner = line.split("=", 1)
            rules.append(make_rule(pat.strip(), owner.replace(" ", "")))
        return cls(rules, default_owner)

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[TriageRule]:
        return iter(self.rules)

    def best_rule(self, module: str, function: Optional[str]) -> Optional[TriageRule]:
        """The most specific rule for ``module!function`` (function None/'' = unknown function)."""
        mod = normalize_module_name(module) if module else ""
        fn = (function or "").lower()
        best: Optional[TriageRule] = None
        best_score = None
        for r in self._by_module.get(mod, []) + self._wild:
            s = r.score(mod, fn)
            if s is None:
                continue
            if best_score is None or s > best_score:
                best, best_score = r, s
        return best

    def lookup(self, module: Optional[str], function: Optional[str] = None) -> RuleMatch:
        """Owner of ``module!function``; the default owner when no rule matches."""
        if not module:
            return RuleMatch(self.default_owner, owner_strength(self.default_owner), None)
        r = self.best_rule(module, function)
        if r is None:
            return RuleMatch(self.default_owner, owner_strength(self.default_owner), None)
        return RuleMatch(r.owner, r.strength, r)

    def __repr__(self) -> str:
        return f"<TriageRules {len(self.rules)} rules, default={self.default_owner}>"


def make_rule(pattern: str, owner: str, why: str = "") -> TriageRule:
    """Build a rule from ``'nt!Ki*'``, ``'hal'``, ``'nt!default'`` or ``'default'`` and an owner."""
    p = pattern.strip()
    if not p or not owner.strip():
        raise KnowledgeBaseError(f"empty triage pattern or owner: {pattern!r}={owner!r}")
    if "!" in p:
        mod, fn = p.split("!", 1)
    else:
        mod, fn = p, "*"
    mod, fn = mod.strip().lower(), fn.strip().lower()
    if mod == "default":
        mod = "*"
    if fn == "default":
        fn = "*"
    if "*" not in mod:
        mod = normalize_module_name(mod)
    if not mod or not fn:
        raise KnowledgeBaseError(f"malformed triage pattern {pattern!r}", expected="module!function")
    return TriageRule(mod, fn, owner.strip(), why, p if "!" in p else f"{p}!*")


# ---------------------------------------------------------------------------------------------
# loading
def _fail(path: Path, msg: str, expected: Optional[str] = None) -> KnowledgeBaseError:
    return KnowledgeBaseError(msg, path=str(path), expected=expected)


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(path, "knowledge-base file is missing") from None
    except (OSError, UnicodeDecodeError) as e:
        raise _fail(path, f"cannot read knowledge-base file: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise KnowledgeBaseError(f"invalid JSON: {e.msg} (line {e.lineno})", path=str(path), offset=e.pos) from None


def _toml_module() -> Any:
    try:  # Python 3.11+
        import tomllib as toml
    except ModuleNotFoundError:  # pragma: no cover - 3.10
        import tomli as toml  # type: ignore[no-redef]
    return toml


def _index_dir() -> Optional[str]:
    """Where parsed TOML files are kept as JSON: ``$DUMPKIT_CACHE/kb`` (``~/.cache/dumpkit/kb``);
    None when ``DUMPKIT_CACHE`` is ``off``."""
    env = os.environ.get("DUMPKIT_CACHE")
    if env and env.lower() in ("off", "0", "none"):
        return None
    base = env or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                               "dumpkit")
    return os.path.join(base, "kb")


def _read_toml(path: Path) -> Dict[str, Any]:
    """Parse a TOML file of the knowledge base.

    TOML is parsed in pure Python (several ms per file, plus the parser's import); the parsed
    value is kept as JSON in the user cache, named by a hash of the file's bytes, so the next
    process reads it with the C JSON parser.  Any trouble with the cache just means a parse.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _fail(path, "knowledge-base file is missing") from None
    except OSError as e:
        raise _fail(path, f"cannot read knowledge-base file: {e}") from None
    idx = _index_dir()
    cached = None
    if idx is not None:
        import hashlib
        cached = os.path.join(idx, f"{path.stem}-{hashlib.blake2b(data, digest_size=16).hexdigest()}.json")
        try:
            with open(cached, "rb") as f:
                got = json.loads(f.read())
            if isinstance(got, dict):
                return got
        except (OSError, ValueError):
            pass
    toml = _toml_module()
    try:
        parsed = toml.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise KnowledgeBaseError("not UTF-8", path=str(path), offset=e.start) from None
    except toml.TOMLDecodeError as e:
        raise _fail(path, f"invalid TOML: {e}") from None
    if cached is not None:
        try:
            text = json.dumps(parsed)            # TypeError for TOML dates: then no index
            os.makedirs(idx, exist_ok=True)      # type: ignore[arg-type]
            tmp = f"{cached}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, cached)
        except (OSError, TypeError, ValueError):
            pass
    return parsed


def _str(path: Path, where: str, d: Mapping[str, Any], key: str, required: bool = True, default: str = "") -> str:
    v = d.get(key, None)
    if v is None:
        if required:
            raise _fail(path, f"{where}: missing '{key}'")
        return default
    if not isinstance(v, str):
        raise _fail(path, f"{where}: '{key}' must be a string, got {type(v).__name__}")
    return v


def _code(path: Path, where: str, v: Any) -> int:
    if not isinstance(v, str) or not _CODE_RE.match(v):
        raise _fail(path, f"{where}: bad code {v!r}", expected="'0x' + 1-8 hex digits")
    return int(v, 16)


def _params(path: Path, where: str, raw: Any, max_n: int = 4) -> Tuple[BugcheckParam, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > max_n:
        raise _fail(path, f"{where}: 'params' must be a list of at most {max_n} entries")
    out = []
    offset = 5 - max_n   # Arg1 for the main table (max 4), Arg2 for subtype tables (max 3)
    for i, p in enumerate(raw):
        name = f"Arg{i + offset}"
        if p is None:
            out.append(BugcheckParam(name, "", None))
            continue
        if isinstance(p, str):
            out.append(BugcheckParam(name, p, None))
            continue
        if not isinstance(p, Mapping):
            raise _fail(path, f"{where}: parameter {i + 1} must be a string or object")
        desc = _str(path, f"{where} {name}", p, "d")
        role = p.get("role")
        if role is not None and role not in PARAM_ROLES:
            raise _fail(path, f"{where} {name}: unknown role {role!r}", expected=", ".join(PARAM_ROLES))
        out.append(BugcheckParam(name, desc, role))
    return tuple(out)


def _subtype_table(path: Path, code_s: str, table: Any) -> Dict[int, SubtypeInfo]:
    code = _code(path, "subtypes", code_s)
    if not isinstance(table, list):
        raise _fail(path, f"subtypes[{code_s}] must be a list")
    rows: Dict[int, SubtypeInfo] = {}
    for j, row in enumerate(table):
        where = f"subtypes[{code_s}][{j}]"
        if not isinstance(row, Mapping):
            raise _fail(path, f"{where} must be an object")
        p1s = row.get("p1")
        if isinstance(p1s, str):
            p1s = [p1s]
        if not isinstance(p1s, list) or not p1s:
            raise _fail(path, f"{where}: 'p1' must be a hex string or a list of them")
        desc = _str(path, where, row, "d")
        name = row.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            raise _fail(path, f"{where}: 'name' must be a non-empty string")
        params = _params(path, where, row.get("params"), max_n=3)
        for p1 in p1s:
            v = _code(path, where, p1)
            if v in rows:
                raise _fail(path, f"{where}: duplicate P1 {p1}")
            rows[v] = SubtypeInfo(code, v, name, desc, params)
    return rows


class _LazyTables(Mapping):
    """code -> parsed table, each parsed and validated on first access (the catalog is ~200 KB of
    JSON: naming one bug check must not build every entry)."""

    def __init__(self, raw: Mapping[int, Any], build: Any) -> None:
        self._raw = raw
        self._build = build
        self._done: Dict[int, Any] = {}

    def __getitem__(self, code: int) -> Any:
        got = self._done.get(code)
        if got is None:
            got = self._done[code] = self._build(code, self._raw[code])
        return got

    def __contains__(self, code: object) -> bool:
        return code in self._raw

    def __iter__(self) -> Iterator[int]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def _load_subtypes(path: Path, lazy: bool = False) -> Mapping[int, Dict[int, SubtypeInfo]]:
    data = _read_json(path)
    if not isinstance(data, Mapping) or not isinstance(data.get("subtypes"), Mapping):
        raise _fail(path, "top level must be an object with a 'subtypes' object")
    raw: Dict[int, Tuple[str, Any]] = {}
    for code_s, table in data["subtypes"].items():
        raw[_code(path, "subtypes", code_s)] = (code_s, table)
    tables = _LazyTables(raw, lambda code, item: _subtype_table(path, item[0], item[1]))
    return tables if lazy else {code: tables[code] for code in raw}


def _load_bugchecks(path: Path, subtypes: Mapping[int, Mapping[int, SubtypeInfo]],
                    subtypes_path: Optional[Path] = None, lazy: bool = False) -> Mapping[int, BugcheckInfo]:
    """The catalog; ``lazy``: entries are validated and built when first looked up (the
    shipped catalog, which the test suite validates whole); otherwise all of them now."""
    data = _read_json(path)
    if not isinstance(data, Mapping) or not isinstance(data.get("bugchecks"), list):
        raise _fail(path, "top level must be an object with a 'bugchecks' list")
    raw: Dict[int, Mapping[str, Any]] = {}
    for i, e in enumerate(data["bugchecks"]):
        if not isinstance(e, Mapping):
            raise _fail(path, f"bugchecks[{i}] must be an object")
        code = _code(path, f"bugchecks[{i}]", e.get("code"))
        if code in raw:
            raise _fail(path, f"bugchecks[{i}]: duplicate code 0x{code:X}")
        raw[code] = e
    for scode in subtypes:
        if scode not in raw:
            raise KnowledgeBaseError(f"subtype table for unknown code 0x{scode:X}", path=str(subtypes_path or path))
    catalog = _LazyTables(raw, lambda code, e: _bugcheck_entry(path, code, e, raw, subtypes))
    return catalog if lazy else {code: catalog[code] for code in raw}


def _bugcheck_entry(path: Path, code: int, e: Mapping[str, Any], raw: Mapping[int, Mapping[str, Any]],
                    subtypes: Mapping[int, Mapping[int, SubtypeInfo]]) -> BugcheckInfo:
    where = f"bug check 0x{code:X}"
    name = _str(path, where, e, "name")
    if not _NAME_RE.fullmatch(name):
        raise _fail(path, f"{where}: name {name!r} is not a symbolic name")
    kind = _str(path, where, e, "kind", required=False, default="bugcheck")
    if kind not in ("bugcheck", "livedump"):
        raise _fail(path, f"{where}: kind must be 'bugcheck' or 'livedump'")
    common = bool(e.get("common", False))
    same = e.get("same_as")
    base_code = code
    if same is not None:
        base_code = _code(path, where, same)
        base = raw.get(base_code)
        if base is None or base.get("same_as") is not None:
            raise _fail(path, f"{where}: same_as {same} is not a plain catalog entry")
        src = base
    else:
        src = e
    desc = _str(path, where, src, "description")
    if not desc.strip():
        raise _fail(path, f"{where}: empty description")
    params = _params(path, where, src.get("params"))
    bucket = _str(path, where, src, "bucket", required=False, default="code")
    if bucket not in BUCKET_RULES:
        raise _fail(path, f"{where}: unknown bucket rule {bucket!r}", expected=", ".join(BUCKET_RULES))
    if bucket == "av_if_exception" and not any(p.role == "exception_code" for p in params):
        raise _fail(path, f"{where}: bucket 'av_if_exception' needs a parameter with role exception_code")
    return BugcheckInfo(code, base_code, name, desc, params, bucket, kind, common,
                        subtypes=dict(subtypes[base_code]) if base_code in subtypes else {})


def _load_modules(path: Path) -> Dict[str, ModuleRecord]:
    data = _read_toml(path)
    mods = data.get("module")
    if not isinstance(mods, list):
        raise _fail(path, "expected [[module]] tables")
    out: Dict[str, ModuleRecord] = {}
    for i, m in enumerate(mods):
        if not isinstance(m, Mapping):
            raise _fail(path, f"module #{i + 1} must be a table")
        file = _str(path, f"module #{i + 1}", m, "file")
        where = f"module {file}"
        category = _str(path, where, m, "category")
        if category not in MODULE_CATEGORIES:
            raise _fail(path, f"{where}: unknown category {category!r}", expected=", ".join(MODULE_CATEGORIES))
        role = _str(path, where, m, "role")
        if role not in MODULE_ROLES:
            raise _fail(path, f"{where}: role must be 'victim' or 'culprit'")
        in_box = m.get("in_box")
        if not isinstance(in_box, bool):
            raise _fail(path, f"{where}: 'in_box' must be true or false")

        def strlist(key: str, m: Mapping[str, Any] = m, where: str = where) -> Tuple[str, ...]:
            v = m.get(key, [])
            if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
                raise _fail(path, f"{where}: '{key}' must be a list of non-empty strings")
            return tuple(v)

        service = m.get("service")
        if service is not None and (not isinstance(service, str) or not service):
            raise _fail(path, f"{where}: 'service' must be a non-empty string")
        rec = ModuleRecord(
            file=file,
            vendor=_str(path, where, m, "vendor"),
            product=_str(path, where, m, "product"),
            category=category,
            role=role,
            in_box=in_box,
            service=service,
            aliases=strlist("aliases"),
            notes=_str(path, where, m, "notes", required=False),
            remediation=strlist("remediation"),
            blame_instead=_str(path, where, m, "blame_instead", required=False),
            buckets=strlist("buckets"),
            patterns=tuple(p.lower() for p in strlist("patterns")),
        )
        for pat in rec.patterns:
            if not pat.endswith("*") or len(pat) < 3:
                raise _fail(path, f"{where}: pattern {pat!r} must be a name prefix ending in '*'")
        for key in {rec.key, *(normalize_module_name(a) for a in rec.aliases)}:
            if key in out:
                raise _fail(path, f"{where}: name {key!r} already used by {out[key].file}")
            out[key] = rec
    return out


def _load_rules(path: Path) -> TriageRules:
    data = _read_toml(path)
    default = data.get("default_owner", "MachineOwner")
    if not isinstance(default, str) or not default:
        raise _fail(path, "'default_owner' must be a non-empty string")
    raw = data.get("rules")
    if not isinstance(raw, list):
        raise _fail(path, "expected a 'rules' array")
    rules: List[TriageRule] = []
    seen = set()
    for i, r in enumerate(raw):
        if not isinstance(r, Mapping):
            raise _fail(path, f"rules[{i}] must be a table")
        pat = _str(path, f"rules[{i}]", r, "match")
        owner = _str(path, f"rules[{i}] {pat}", r, "owner")
        try:
            rule = make_rule(pat, owner.replace(" ", ""), _str(path, f"rules[{i}]", r, "why", required=False))
        except KnowledgeBaseError as e:
            raise _fail(path, f"rules[{i}]: {e.message}", e.expected) from None
        key = (rule.module, rule.function)
        if key in seen:
            raise _fail(path, f"rules[{i}]: duplicate pattern {pat!r}")
        seen.add(key)
        rules.append(rule)
    return TriageRules(rules, default)


class KnowledgeBase:
    """The loaded knowledge base.  Use :meth:`load` (cached per directory)."""

    _cache: Dict[str, "KnowledgeBase"] = {}
    _lock = threading.RLock()

    def __init__(self, bugchecks: Mapping[int, BugcheckInfo], modules: Any,
                 rules: Any, source: Optional[Path] = None) -> None:
        # ``modules`` and ``rules`` may be zero-argument loaders: the shipped knowledge base reads
        # modules.toml / triage.toml only when a module or rule is first asked for
        self.bugchecks: Mapping[int, BugcheckInfo] = bugchecks if isinstance(bugchecks, _LazyTables) \
            else dict(bugchecks)
        self._modules: Any = modules if callable(modules) else dict(modules)
        self._rules: Any = rules
        self.source = source
        self._patterns_list: Optional[List[Tuple[str, ModuleRecord]]] = None
        self.overlays: List[str] = []          # user files merged over the shipped ones (DUMPKIT_KB_PATH, --kb)

    @property
    def modules(self) -> Mapping[str, ModuleRecord]:
        if callable(self._modules):
            with self._lock:
                if callable(self._modules):
                    self._modules = dict(self._modules())
        return self._modules

    @property
    def rules(self) -> TriageRules:
        if callable(self._rules) and not isinstance(self._rules, TriageRules):
            with self._lock:
                if callable(self._rules) and not isinstance(self._rules, TriageRules):
                    self._rules = self._rules()
        return self._rules

    @property
    def _patterns(self) -> List[Tuple[str, ModuleRecord]]:
        if self._patterns_list is None:
            seen = set()
            pats: List[Tuple[str, ModuleRecord]] = []
            for r in self.modules.values():
                if id(r) in seen:
                    continue
                seen.add(id(r))
                pats.extend((p[:-1], r) for p in r.patterns)
            self._patterns_list = pats
        return self._patterns_list

    @classmethod
    def load(cls, directory: Optional[Union[str, Path]] = None, *, reload: bool = False,
             overlays: Optional[Sequence[Union[str, Path]]] = None) -> "KnowledgeBase":
        """Load the four files (from ``directory`` or the shipped KB); cached per directory.

        A ``directory`` given here is validated whole now.  The shipped knowledge base (which
        the test suite validates whole) is read lazily: a bug check entry is built when it is
        first looked up, modules.toml and triage.toml when a module or rule is first asked
        for, so naming one bug check costs a JSON parse, not the whole catalog.

        The user's own module records and triage rules are merged over them: the folders in
        ``$DUMPKIT_KB_PATH`` (``os.pathsep``-separated) and then ``overlays`` (``--kb DIR``), see
        :mod:`dumpkit.analysis.kb_overlay`; with overlays the modules and rules are read and
        validated at once, so a mistake in the user's files is reported here.
        """
        from .kb_overlay import load_overlays, overlay_dirs, overlay_key
        shipped = directory is None
        base = Path(directory) if directory is not None else kb_file("bugchecks.json").parent
        dirs = overlay_dirs([str(o) for o in overlays or ()])
        key = str(base.resolve()) + (repr(overlay_key(dirs)) if dirs else "")
        with cls._lock:
            if not reload and key in cls._cache:
                return cls._cache[key]
            subtypes = _load_subtypes(base / "bugcheck_subtypes.json", lazy=shipped)
            bugchecks = _load_bugchecks(base / "bugchecks.json", subtypes, base / "bugcheck_subtypes.json",
                                        lazy=shipped)
            applied: List[str] = []
            if dirs:
                modules, rules, applied = load_overlays(_load_modules(base / "modules.toml"),
                                                        _load_rules(base / "triage.toml"), dirs)
                kb = cls(bugchecks, modules, rules, base)  # type: ignore[arg-type]
            elif shipped:
                kb = cls(bugchecks, lambda: _load_modules(base / "modules.toml"),
                         lambda: _load_rules(base / "triage.toml"), base)
            else:
                kb = cls(bugchecks, _load_modules(base / "modules.toml"), _load_rules(base / "triage.toml"), base)
            kb.overlays = applied
            cls._cache[key] = kb
            return kb

    # -- bug checks ---------------------------------------------------------------------------
    def bugcheck(self, code: Union[int, str]) -> Optional[BugcheckInfo]:
        """Catalog entry for ``code``; 0x1000xxxx codes without an entry map to the base code (``_M`` name)."""
        c = parse_code(code)
        info = self.bugchecks.get(c)
        if info is not None:
            return info
        if c & 0x10000000 and (c & 0x0FFFFFFF) in self.bugchecks:
            base = self.bugchecks[c & 0x0FFFFFFF]
            return BugcheckInfo(c, base.base_code, base.name + "_M", base.description, base.parameters,
                                base.bucket, base.kind, base.common, base.subtypes)
        return None

    def subtype(self, code: Union[int, str], p1: int) -> Optional[SubtypeInfo]:
        """The per-P1 meaning of ``code`` (e.g. ``subtype(0x139, 0x1d).name == 'INVALID_BALANCED_TREE'``)."""
        info = self.bugcheck(code)
        return info.subtype(p1) if info is not None else None

    # -- modules ------------------------------------------------------------------------------
    def module(self, name: str) -> Optional[ModuleRecord]:
        """Module record by file name, WinDbg module name or path (case-insensitive)."""
        if not name:
            return None
        key = normalize_module_name(name)
        rec = self.modules.get(key)
        if rec is not None:
            return rec
        best: Optional[ModuleRecord] = None
        best_len = 0
        for prefix, r in self._patterns:
            if key.startswith(prefix) and len(prefix) > best_len:
                best, best_len = r, len(prefix)
        return best

    def __repr__(self) -> str:
        n_mod = len({id(m) for m in self.modules.values()})
        return (f"<KnowledgeBase {len(self.bugchecks)} bug checks, {n_mod} modules, "
                f"{len(self.rules)} triage rules from {self.source}"
                + (f" + {len(self.overlays)} user file(s)" if self.overlays else "") + ">")
