"""The real ``!analyze -v`` corpus (tests/data/agreement/*.json): load, render, compare.

Used by ``tests/test_agreement.py`` and ``benchmarks/bench_agreement.py``.

Each case holds facts transcribed from one public WinDbg output: the bug check and its
arguments, the input fields an engineer pastes (process, default bucket, trap frame or
context record, exception record, faulting instruction, stack) and, apart, the conclusions
WinDbg printed.  :func:`render` turns the inputs back into WinDbg-shaped text **without any
conclusion line** (no MODULE_NAME, IMAGE_NAME, SYMBOL_NAME, FOLLOWUP_NAME, FOLLOWUP_IP,
FAILURE_BUCKET_ID, FAILURE_ID_HASH, BUCKET_ID, key/value bucket pairs ...), so that dumpkit
has to reach the conclusions itself; :func:`compare` runs dumpkit's text analysis on it and
checks each conclusion field against what WinDbg said.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

DATA = Path(__file__).resolve().parent / "data" / "agreement"
KNOWN_FILE = DATA / "KNOWN_DISAGREEMENTS.txt"

#: the fields agreement is measured on; legacy-engine cases count the first two only
FIELDS = ("MODULE_NAME", "IMAGE_NAME", "FAILURE_BUCKET_ID", "FAILURE_ID_HASH")
LEGACY_FIELDS = ("MODULE_NAME", "IMAGE_NAME")

#: lines the renderer never writes: they are WinDbg's conclusions, not its inputs
CONCLUSION_KEYS = frozenset({
    "MODULE_NAME", "IMAGE_NAME", "SYMBOL_NAME", "FOLLOWUP_NAME", "FOLLOWUP_IP", "FAILURE_BUCKET_ID",
    "FAILURE_ID_HASH", "FAILURE_ID_HASH_STRING", "BUCKET_ID", "BUCKET_ID_FUNC_OFFSET", "BUCKET_ID_MODULE_STR",
    "BUCKET_ID_FUNCTION_STR", "BUCKET_ID_OFFSET", "BUCKET_ID_PREFIX_STR", "BUCKET_ID_MODVER_STR",
    "BUCKET_ID_MODTIMEDATESTAMP", "BUCKET_ID_MODCHECKSUM", "PRIMARY_PROBLEM_CLASS", "BUGCHECK_STR",
    "DEFAULT_BUCKET_ID_OVERRIDE", "STACK_COMMAND", "IMAGE_VERSION", "DEBUG_FLR_IMAGE_TIMESTAMP",
    "MODULE_IMAGE_NAME", "FAILURE_PROBLEM_CLASS", "FAILURE_EXCEPTION_CODE", "FAILURE_IMAGE_NAME",
    "FAILURE_SYMBOL_NAME", "FAILURE_FUNCTION_NAME", "FAILURE_MODULE_NAME", "TARGET_TIME", "ANALYSIS_SESSION_TIME",
    "OS_VERSION", "BUILDLAB_STR", "OSPLATFORM_TYPE", "OSNAME", "FAULT_INSTR_CODE", "Followup",
})


def family_of(case: Dict[str, Any]) -> str:
    """The bug-check family a case is counted under in the tables."""
    if case.get("family"):
        return str(case["family"])
    if case.get("mode") == "user":
        return "user mode"
    code = bugcheck_code(case)
    if code is None:
        return "other"
    b = code & ~0x10000000
    fams = {
        0xA: "0xA/0xD1", 0xD1: "0xA/0xD1", 0x50: "0x50", 0x1E: "0x1E/0x7E/0x8E", 0x7E: "0x1E/0x7E/0x8E",
        0x8E: "0x1E/0x7E/0x8E", 0x3B: "0x3B", 0x133: "0x133", 0x9F: "0x9F", 0x139: "0x139", 0x124: "0x124 WHEA",
        0x101: "0x101", 0x116: "TDR 0x116/0x117", 0x117: "TDR 0x116/0x117", 0xFE: "0xFE USB", 0xEF: "0xEF",
        0x20: "0x20", 0x153: "0x153", 0xCA: "0xCA", 0x5C: "0x5C", 0x1A: "0x1A", 0x19: "pool 0x19/0x13A/0xC2/0xC5",
        0x4A: "0x4A", 0xC2: "pool 0x19/0x13A/0xC2/0xC5", 0xC5: "pool 0x19/0x13A/0xC2/0xC5",
        0x13A: "pool 0x19/0x13A/0xC2/0xC5", 0xC4: "0xC4 verifier",
        0x7F: "0x7F", 0x1000007E: "0x1E/0x7E/0x8E",
    }
    if code in (0x141, 0x144, 0x193, 0x1CC, 0x15F, 0x1B8, 0x15E, 0x1A8) or str(
            case.get("expected", {}).get("FAILURE_BUCKET_ID", "")).startswith("LKD_"):
        return "LKD live dumps"
    buckets = " ".join(str(case.get("expected", {}).get(k, "")) for k in ("FAILURE_BUCKET_ID", "BUCKET_ID")).upper()
    if "MEMORY_CORRUPTION" in buckets or "PAGE_NOT_ZERO" in buckets:
        return "memory corruption"
    return fams.get(b, "other")


def bugcheck_code(case: Dict[str, Any]) -> Optional[int]:
    code = (case.get("bugcheck") or {}).get("code")
    return int(code, 16) if code else None


def load_cases(directory: Path = DATA) -> List[Dict[str, Any]]:
    cases = []
    for p in sorted(directory.glob("*.json")):
        with open(p, encoding="utf-8") as f:
            c = json.load(f)
        c["_path"] = str(p)
        cases.append(c)
    return cases


def known_disagreements(path: Path = KNOWN_FILE) -> Dict[str, str]:
    """case id -> reason, from KNOWN_DISAGREEMENTS.txt (``id  reason``; ``#`` comments)."""
    out: Dict[str, str] = {}
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        s = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
        if not s:
            continue
        cid, _, reason = s.partition(" ")
        out[cid] = reason.strip()
    return out


# ---------------------------------------------------------------------------------------------
# rendering

def _hex64(v: str, arch: str) -> str:
    n = int(v, 16)
    return f"{n:08x}" if arch == "x86" else f"{n:016x}"


def _render_registers(rc: Dict[str, Any], arch: str) -> List[str]:
    regs = rc.get("registers") or {}
    out: List[str] = []
    if arch == "x86":
        rows = [("eax", "ebx", "ecx", "edx", "esi", "edi"), ("eip", "esp", "ebp")]
    else:
        rows = [("rax", "rbx", "rcx"), ("rdx", "rsi", "rdi"), ("rip", "rsp", "rbp"), ("r8", "r9", "r10"),
                ("r11", "r12", "r13"), ("r14", "r15")]
    for row in rows:
        cells = [f"{r.rjust(3)}={regs[r]}" for r in row if r in regs]
        if cells:
            out.append(" ".join(cells))
    flags = rc.get("flags", "")
    iopl = f"iopl=0         {flags}".rstrip()
    if any(k in regs for k in ("cs", "ss", "efl")):
        segs = " ".join(f"{k}={regs[k]}" for k in ("cs", "ss", "ds", "es", "fs", "gs") if k in regs)
        out.append(iopl)
        out.append(segs + (f"             efl={regs['efl']}" if "efl" in regs else ""))
    elif flags:
        out.append(iopl)
    return out


def _render_instruction(ins: Dict[str, Any]) -> List[str]:
    out = []
    if ins.get("symbol"):
        out.append(ins["symbol"] + ":")
    if ins.get("address"):
        out.append(f"{ins['address']} {ins.get('bytes', '').ljust(15)} {ins.get('text', '')}".rstrip())
    return out


def _render_frame(fr: Dict[str, Any], arch: str) -> str:
    site = fr["call_site"]
    if fr.get("trap_frame"):
        site += f" (TrapFrame @ {fr['trap_frame']})"
    if fr.get("source_line"):
        site += f" [{fr['source_line']}]"
    if fr.get("inline"):             # an inlined call: no frame of its own
        if arch == "x86":
            return f"(Inline) --------     -------- -------- -------- {site}"
        if fr.get("args"):
            return f"(Inline Function) --------`--------     : {' '.join(fr['args'])} : {site}"
        return f"(Inline Function) --------`--------     {site}"
    if not fr.get("child_sp") and not fr.get("retaddr"):     # call site only ('kc')
        return f"{fr.get('index', '00')} {site}"
    if not fr.get("child_sp"):       # 'kb' after .thread/.cxr: '# RetAddr : Args to Child : Call Site'
        return f"{fr.get('index', '00')} {fr['retaddr']} : {' '.join(fr.get('args') or [])} : {site}"
    if arch == "x86":
        args = " ".join(fr.get("args") or ["00000000"] * 3)
        return f"{fr['child_sp']} {fr['retaddr']} {args} {site}"
    if fr.get("args"):
        return f"{fr['child_sp']} {fr['retaddr']} : {' '.join(fr['args'])} : {site}"
    return f"{fr['child_sp']} {fr['retaddr']}     {site}"      # k form: no argument columns


def render(case: Dict[str, Any]) -> str:
    """WinDbg ``!analyze -v`` text from a case's inputs, with no conclusion line."""
    arch = case.get("arch", "x64")
    bc = case.get("bugcheck") or {}
    lines: List[str] = []
    if case.get("mode") == "user":
        lines += ["*" * 79, "*" + " " * 77 + "*", "*" + "Exception Analysis".center(77) + "*",
                  "*" + " " * 77 + "*", "*" * 79, ""]
    else:
        lines += ["*" * 79, "*" + " " * 77 + "*", "*" + "Bugcheck Analysis".center(77) + "*",
                  "*" + " " * 77 + "*", "*" * 79, ""]
    if bc.get("code"):
        code = int(bc["code"], 16)
        name = bc.get("name") or "UNKNOWN_BUGCHECK"
        lines.append(f"{name} ({code:x})")
        lines.append("Arguments:")
        for n, a in enumerate(bc.get("args") or [], 1):
            lines.append(f"Arg{n}: {_hex64(a, arch)}")
        lines += ["", "Debugging Details:", "------------------", ""]
        lines.append(f"BUGCHECK_CODE:  {code:x}")
        lines.append("")
        for n, a in enumerate(bc.get("args") or [], 1):
            lines.append(f"BUGCHECK_P{n}: {int(a, 16):x}")
            lines.append("")
    for w in case.get("warnings") or []:      # '*** WARNING: Unable to verify timestamp for X.sys' lines
        lines.append(w)
    if case.get("warnings"):
        lines.append("")
    for k, v in (case.get("given") or {}).items():
        if k in CONCLUSION_KEYS:
            continue
        lines.append(f"{k}:  {v}")
        if k == "CHKIMG_EXTENSION" and case.get("chkimg"):     # the '!chkimg' summary line under it
            ck = case["chkimg"]
            lines.append(f"{ck['errors']} error{'s' if ck['errors'] != 1 else ''} : !{ck['module']}"
                         + (f" ({ck['range']})" if ck.get("range") else ""))
        lines.append("")
    fip = case.get("faulting_ip")
    if fip:
        lines.append("FAULTING_IP: ")
        lines += _render_instruction(fip)
        lines.append("")
    exr = case.get("exception_record")
    if exr:
        rec = exr.get("record")
        lines.append(f"EXCEPTION_RECORD:  {rec} -- (.exr 0x{rec})" if rec else "EXCEPTION_RECORD:  (.exr -1)")
        if exr.get("address"):
            sym = f" ({exr['symbol']})" if exr.get("symbol") else ""
            lines.append(f"ExceptionAddress: {exr['address']}{sym}")
        if exr.get("code"):
            lines.append(f"   ExceptionCode: {exr['code']}" + (f" ({exr['text']})" if exr.get("text") else ""))
        lines.append(f"  ExceptionFlags: {exr.get('flags', '00000000')}")
        params = (exr.get("parameters") or "").split()
        lines.append(f"NumberParameters: {len(params)}")
        for n, p in enumerate(params):
            lines.append(f"   Parameter[{n}]: {p}")
        if exr.get("attempt"):
            what, _, addr = exr["attempt"].partition(" ")
            verb = {"read": "read from", "write": "write to", "execute": "execute",
                    "execute-nx": "execute non-executable"}.get(what, what)
            lines.append(f"Attempt to {verb} address {addr}")
        lines.append("")
    rc = case.get("register_context")
    if rc:
        kind = rc.get("kind")
        addr = rc.get("address")
        if kind == "trap_frame" and addr:
            lines.append(f"TRAP_FRAME:  {addr} -- (.trap 0x{addr})")
        elif kind == "context" and addr:
            lines.append(f"CONTEXT:  {addr} -- (.cxr 0x{addr})")
        elif kind == "tss" and addr:        # x86 double fault: the task state segment
            lines.append(f"TSS:  {addr} -- (.tss {addr.lstrip('0') or '0'})")
        elif case.get("mode") == "user":
            lines.append("CONTEXT:  (.ecxr)")
        lines += _render_registers(rc, arch)
        ins = case.get("instruction")
        if ins:
            lines += _render_instruction(ins)
        if addr:
            lines.append("Resetting default scope")
        lines.append("")
    elif case.get("instruction"):
        lines += _render_instruction(case["instruction"])
        lines.append("")
    if "stack" in case:              # printed even when empty (WinDbg found no frames)
        lines.append("STACK_TEXT:  ")
        for fr in case["stack"]:
            if fr.get("warning_before"):        # 'WARNING: Stack unwind information not available...'
                lines.append(fr["warning_before"])
            lines.append(_render_frame(fr, arch))
        lines += ["", ""]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# comparing

@dataclass
class Result:
    case_id: str
    engine: str
    family: str
    fields: Tuple[str, ...]
    expected: Dict[str, Optional[str]]
    got: Dict[str, Optional[str]]
    error: Optional[str] = None
    agree: Dict[str, bool] = field(default_factory=dict)

    @property
    def all_agree(self) -> bool:
        return self.error is None and all(self.agree.get(f, False) for f in self.fields if f in self.expected)

    def mismatches(self) -> List[str]:
        if self.error:
            return [f"error: {self.error}"]
        return [f"{f}: expected {self.expected.get(f)!r}, got {self.got.get(f)!r}"
                for f in self.fields if f in self.expected and not self.agree.get(f)]


def fields_for(case: Dict[str, Any]) -> Tuple[str, ...]:
    return LEGACY_FIELDS if case.get("engine") == "legacy" else FIELDS


def _norm(field_name: str, v: Optional[str]) -> Optional[str]:
    if v is None:
        return None
    v = str(v).strip()
    if field_name in ("FAILURE_ID_HASH",):
        return v.lower()
    if field_name in ("MODULE_NAME", "IMAGE_NAME"):
        return v.lower()      # WinDbg's own case varies with the module list (Ntfs / NTFS)
    return v


def dumpkit_conclusions(text: str) -> Dict[str, Optional[str]]:
    import dumpkit

    a = dumpkit.analyze(text)
    return {"MODULE_NAME": a.module_name, "IMAGE_NAME": a.image_name, "FAILURE_BUCKET_ID": a.failure_bucket_id,
            "FAILURE_ID_HASH": a.failure_id_hash, "SYMBOL_NAME": a.symbol_name}


def compare(case: Dict[str, Any]) -> Result:
    flds = fields_for(case)
    exp = {k: case["expected"].get(k) for k in FIELDS if case["expected"].get(k) is not None}
    res = Result(case["id"], case.get("engine", "modern"), family_of(case), flds, exp, {})
    try:
        res.got = dumpkit_conclusions(render(case))
    except Exception as e:      # a crash on a case is a disagreement, shown with its reason
        res.error = f"{type(e).__name__}: {e}"
        return res
    for f in flds:
        if f in exp:
            res.agree[f] = _norm(f, exp[f]) == _norm(f, res.got.get(f))
    return res


def compare_all(cases: Optional[Iterable[Dict[str, Any]]] = None) -> List[Result]:
    return [compare(c) for c in (load_cases() if cases is None else cases)]


def table(results: List[Result]) -> str:
    """Markdown tables: per field overall, per family and per engine."""

    def row(label: str, rs: List[Result]) -> str:
        cells = []
        for f in FIELDS:
            counted = [r for r in rs if f in r.fields and f in r.expected]
            ok = sum(1 for r in counted if r.agree.get(f))
            cells.append(f"{ok}/{len(counted)}" if counted else "-")
        allok = sum(1 for r in rs if r.all_agree)
        return f"| {label} | {len(rs)} | " + " | ".join(cells) + f" | {allok}/{len(rs)} |"

    head = "| {} | cases | " + " | ".join(FIELDS) + " | all fields |"
    sep = "|---|---|" + "---|" * len(FIELDS) + "---|"
    out = [head.format("corpus"), sep, row("all", results)]
    out += ["", head.format("engine"), sep]
    for eng in sorted({r.engine for r in results}):
        out.append(row(eng, [r for r in results if r.engine == eng]))
    out += ["", head.format("family"), sep]
    for fam in sorted({r.family for r in results}):
        out.append(row(fam, [r for r in results if r.family == fam]))
    return "\n".join(out)


if __name__ == "__main__":     # pragma: no cover - debugging aid: print one case's rendered text
    import sys

    for c in load_cases():
        if not sys.argv[1:] or c["id"] in sys.argv[1:]:
            sys.stdout.write(render(c) if sys.argv[1:] else "")
    if not sys.argv[1:]:
        print(table(compare_all()))
    os._exit(0)
