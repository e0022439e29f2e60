"""``!analyze -v`` layout: the same field names in the same order, so a WinDbg report and
dumpkit's can be compared with ``diff``.  dumpkit's own verdict follows in ``DUMPKIT_*`` fields."""
from __future__ import annotations

import textwrap
from typing import Any, List, Optional

from dumpkit.model import pointer_size_of, windbg_hex

__all__ = ["render_text"]

_BANNER = "\n".join([
    "*" * 79,
    "*" + " " * 77 + "*",
    "*                        Bugcheck Analysis                                    *",
    "*" + " " * 77 + "*",
    "*" * 79,
])
_REG_ROWS = (("rax", "rbx", "rcx"), ("rdx", "rsi", "rdi"), ("rip", "rsp", "rbp"), ("r8", "r9", "r10"),
             ("r11", "r12", "r13"), ("r14", "r15"))


def _regs(ctx: Any) -> List[str]:
    out = []
    for row in _REG_ROWS:
        parts = []
        for r in row:
            if r in ctx.regs:
                name = r if len(r) == 3 else " " + r
                parts.append(f"{name}={ctx.regs[r]:016x}")
        if parts:
            out.append(" ".join(parts))
    return out


def _field(lines: List[str], name: str, value: Optional[str], sep: str = ":  ") -> None:
    if value is None or value == "":
        return
    lines.append(f"{name}{sep}{value}")
    lines.append("")


def _pointer_size(a: Any) -> int:
    ctx = a.context
    if ctx is not None and getattr(ctx, "POINTER_SIZE", None):
        return int(ctx.POINTER_SIZE)
    return pointer_size_of([f.child_sp for f in a.frames or ()])


def render_text(a: Any) -> str:
    """Render an Analysis in ``!analyze -v`` order (8-digit pointers for a 32-bit crash, as WinDbg)."""
    L: List[str] = [_BANNER, ""]
    ps = _pointer_size(a)
    pw = 2 * ps
    code = a.bugcheck_code
    if code is not None:
        L.append(f"{a.bugcheck_name or 'UNKNOWN_BUGCHECK'} ({code:x})")
        if a.bugcheck_inferred:
            L.append("(bug check inferred from the stack: the input did not contain it)")
        if a.bugcheck_description:
            L.extend(textwrap.wrap(a.bugcheck_description, 79))
        if a.parameter_text:
            L.append("Arguments:")
            for arg, value, text in a.parameter_text:
                L.append(f"{arg}: {value:0{pw}x}, {text}".rstrip(", "))
    L += ["", "Debugging Details:", "------------------", ""]
    if code is not None:
        b = code & 0xFFFF if (code & 0xF0000000) == 0x10000000 and not (code & 0x0FFF0000) else code
        _field(L, "BUGCHECK_CODE", f"{b:x}")
        for i, p in enumerate(a.parameters[:4], 1):
            _field(L, f"BUGCHECK_P{i}", f"{p:x}", ": ")
    f = a.fault
    for key in ("FILE_IN_CAB", "VIRTUAL_MACHINE", "DUMP_FILE_ATTRIBUTES"):
        if key in a.fields:
            _field(L, key, a.fields[key])
    if f is not None and f.address is not None and f.access in ("read", "write"):
        region = f" {f.region}" if f.region else ""
        _field(L, "READ_ADDRESS" if f.access == "read" else "WRITE_ADDRESS", f"{f.address:0{pw}x}{region}")
    _field(L, "PROCESS_NAME", a.process_name)
    ctx = a.context
    if ctx is not None and ctx.regs:
        label = "TRAP_FRAME" if "trap" in ctx.source.lower() else "CONTEXT"
        cmd = ".trap" if label == "TRAP_FRAME" else ".cxr"
        addr = f"{ctx.address:0{pw}x} -- ({cmd} 0x{ctx.address:x})" if ctx.address else f"-- ({cmd})"
        L.append(f"{label}:  {addr}")
        L.extend(ctx.render().splitlines() if ps == 4 and hasattr(ctx, "render") else _regs(ctx))
        d = a.fault_disasm
        if d is not None:
            if d.label:
                L.append(f"{d.label}:")
            ea = ""
            if d.effective_address is not None:
                ea = f" {d.segment or 'ds'}:{windbg_hex(d.effective_address, ps)}={d.memory_value or '????????'}"
            L.append(f"{windbg_hex(d.address, ps)} {d.opcode.hex():<16}{d.text}{ea}")
        L += ["Resetting default scope", ""]
    if a.frames:
        L.append("STACK_TEXT:  ")
        warned = False
        for fr in a.frames:
            scanned = getattr(fr, "trust", None) == "scan"
            if scanned and not warned:
                # WinDbg's own wording where it stops unwinding and starts guessing
                L.append("WARNING: Stack unwind information not available. Following frames may be wrong.")
                warned = True
            mark = "  [found by stack scan]" if scanned else ""
            if ps == 4:                  # x86 `k`: ChildEBP RetAddr Call Site
                base = getattr(fr, "frame_base", None)
                L.append(f"{(fr.child_sp if base is None else base) & 0xFFFFFFFF:08x} "
                         f"{fr.return_address & 0xFFFFFFFF:08x} {fr.call_site}{mark}")
            else:
                L.append(f"{windbg_hex(fr.child_sp)} {windbg_hex(fr.return_address)}     : {fr.call_site}{mark}")
        L += ["", ""]
    _field(L, "SYMBOL_NAME", a.symbol_name)
    _field(L, "MODULE_NAME", a.module_name, ": ")
    _field(L, "IMAGE_NAME", a.image_name)
    _field(L, "STACK_COMMAND", a.stack_command)
    if a.bucket_id_func_offset is not None and a.module_name:
        _field(L, "BUCKET_ID_FUNC_OFFSET", f"{a.bucket_id_func_offset:x}")
    _field(L, "FAILURE_BUCKET_ID", a.failure_bucket_id)
    for key in ("OS_VERSION", "BUILDLAB_STR"):
        if key in a.fields:
            _field(L, key, a.fields[key])
    _field(L, "OSPLATFORM_TYPE", getattr(a.context, "arch", None) or ("x86" if ps == 4 else "x64"))
    _field(L, "FAILURE_ID_HASH", a.failure_id_hash)
    L.append(f"Followup:     {a.followup_owner}")
    L.append("---------")
    L.append("")
    # dumpkit's additions
    if f is not None:
        _field(L, "DUMPKIT_FAULT", f"{f.kind}" + (f" ({f.access})" if f.access else ""))
        L.extend(textwrap.wrap(f.explanation, 100))
        L.append("")
    c = a.culprit
    _field(L, "DUMPKIT_CULPRIT", (c.module or "(not on the stack)") + f"  [confidence: {a.confidence}]")
    if c.reason:
        L.extend(textwrap.wrap(c.reason, 100))
        L.append("")
    if a.victims:
        L.append("DUMPKIT_VICTIMS:")
        for v in a.victims:
            L.extend(textwrap.wrap(f"{v.module}: {v.reason}", 100, initial_indent="    ", subsequent_indent="      "))
        L.append("")
    if a.remediation:
        L.append("DUMPKIT_REMEDIATION:")
        for n, r in enumerate(a.remediation, 1):
            L.extend(textwrap.wrap(r, 100, initial_indent=f"    {n}. ", subsequent_indent="       "))
        L.append("")
    if getattr(a, "correlations", None):
        L.append("DUMPKIT_SETUP_LOGS:")
        for c in a.correlations:
            L.extend(textwrap.wrap(f"[{c.confidence}] {c.summary}", 100, initial_indent="    ",
                                   subsequent_indent="      "))
            for e in c.evidence:
                L.extend(textwrap.wrap(f"evidence: {e}", 100, initial_indent="      ", subsequent_indent="        "))
            for r in c.remediation:
                L.extend(textwrap.wrap(f"do: {r}", 100, initial_indent="      ", subsequent_indent="        "))
        L.append("")
    for n in a.notes:
        L.extend(textwrap.wrap(n, 100, initial_indent="DUMPKIT_NOTE: ", subsequent_indent="    "))
    return "\n".join(L).rstrip() + "\n"
