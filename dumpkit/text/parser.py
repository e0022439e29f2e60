"""Pasted WinDbg text -> :class:`ParsedText`.

One pass over the lines; every line is offered to small recognisers (bug check
header, ``ArgN:``, ``KEY: value`` fields, ``KEY_VALUES_STRING`` pairs, register
dumps, disassembly, stack frames, ``lm`` rows, session banner lines, setupapi
failure lines).  Nothing here raises except :class:`TextParseError`, and only
when the text holds nothing usable at all.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple, Union

from dumpkit.errors import TextParseError
from dumpkit.model import Context, ModuleList, Stack

from ._common import clean_text, parse_hex
from .lm import LmEntry, is_lm_header, is_unloaded_header, parse_detail, parse_lm_line
from .parsed import DisasmLine, ParsedText
from .registers import is_register_line, label_line, parse_disasm_line, register_pairs
from .stack import (FrameLine, build_stack, is_stack_header, is_unwind_warning, join_wrapped, parse_frame_line,
                    trap_frame_line)

__all__ = ["parse_text"]

_BC_HEADER_RE = re.compile(r"^\s*(?P<name>[A-Z][A-Z0-9_]{3,})\s+\((?P<code>[0-9a-fA-F]{1,8})\)\s*$")
_ARG_RE = re.compile(r"^\s*Arg(?P<n>[1-4]):\s*(?P<v>[0-9a-fA-F`]{1,17}),?\s*(?P<text>.*)$")
_SHORT_RE = re.compile(r"BugCheck\s+(?P<code>[0-9A-Fa-f]{1,8}),\s*\{(?P<args>[^}]{0,200})\}")
_FATAL_RE = re.compile(r"Fatal System Error:\s*0x(?P<code>[0-9A-Fa-f]{1,8})")
_FATAL_ARGS_RE = re.compile(r"^\s*\((?P<args>0x[0-9A-Fa-f]+(?:\s*,\s*0x[0-9A-Fa-f]+){3})\)\s*$")
_BC_CODE_RE = re.compile(r"^\s*Bugcheck code\s+(?P<code>[0-9A-Fa-f]{1,8})\s*$", re.I)
_BC_ARGS_RE = re.compile(r"^\s*Arguments\s+(?P<args>(?:[0-9a-fA-F`]{8,17}\s+){3}[0-9a-fA-F`]{8,17})\s*$")
_FIELD_RE = re.compile(r"^\s{0,8}(?P<key>[A-Z][A-Z0-9_]{2,})(?P<sep>:)(?P<val>(?:\s.*)?)$")
_UM_BANNER_RE = re.compile(r"^\s*\*\s+Exception Analysis\s+\*\s*$")
_NOT_FIELDS = {"NOTE", "WARNING", "ERROR", "SYMSRV", "DBGHELP", "DBGENG", "TRIAGER", "KDTARGET", "CAUTION", "HINT",
               "URL", "HTTP", "HTTPS"}
_MULTILINE = {"STACK_TEXT", "TRAP_FRAME", "CONTEXT", "EXCEPTION_RECORD", "FOLLOWUP_IP", "FAULTING_IP",
              "READ_ADDRESS", "WRITE_ADDRESS", "LOCK_ADDRESS", "PNP_TRIAGE_DATA", "LAST_CONTROL_TRANSFER",
              "KEY_VALUES_STRING", "IRP_ADDRESS"}
# values are '\S(?:.*\S)?' (first to last non-blank), never a lazy '.+?\s*$': that is quadratic on blanks
_KV_KEY_RE = re.compile(r"^\s+Key\s*:\s*(?P<k>\S(?:.*\S)?)\s*$")
_KV_VAL_RE = re.compile(r"^\s+Value\s*:\s*(?P<v>(?:\S(?:.*\S)?)?)\s*$")
_SESSION_RE = re.compile(r"^\s*Debug session time:\s*(?P<v>\S(?:.*\S)?)\s*$", re.I)
_UPTIME_RE = re.compile(r"^\s*System Uptime:\s*(?P<v>\S(?:.*\S)?)\s*$", re.I)
_PUPTIME_RE = re.compile(r"^\s*Process Uptime:\s*(?P<v>\S(?:.*\S)?)\s*$", re.I)
_BUILT_RE = re.compile(r"^\s*Built by:\s*(?P<v>\S+)", re.I)
_KVER_RE = re.compile(r"^\s*(?P<v>Windows .{1,40} Kernel Version \d+.*)$")
_FOLLOWUP_RE = re.compile(r"^\s*Followup:\s*(?P<v>\S(?:.*\S)?)\s*$")
_CMD_RE = re.compile(r"(?:^|[>;]\s*)(?P<cmd>\.trap|\.cxr|\.exr|r)\b(?P<arg>[^;\n]*)")
_PROMPT_RE = re.compile(r"^\s*(?:\d+:\s*)?k[dx]>\s*(?P<cmd>.*)$")
_EXC_ADDR_RE = re.compile(r"^\s*ExceptionAddress:\s*(?P<v>[0-9a-fA-F`]{8,17})(?:\s+\((?P<sym>[^)]*)\))?")
_EXC_CODE_RE = re.compile(r"^\s*ExceptionCode:\s*(?P<v>[0-9a-fA-F]{1,8})(?:\s+\((?P<text>[^)]*)\))?")
_EXC_PARAM_RE = re.compile(r"^\s*Parameter\[(?P<n>\d)\]:\s*(?P<v>[0-9a-fA-F`]{1,17})")
_ATTEMPT_RE = re.compile(r"Attempt to (?P<what>read from|write to|execute(?: non-executable)?)\s+address\s+"
                         r"(?P<v>[0-9a-fA-F`]{1,17})", re.I)
_SETUP_SVC_RE = re.compile(r"(?:DelService|AddService)\s*=\s*(?P<a>[\w.\-]+)|(?:Deleted|Added|Installed) service\s+'(?P<b>[\w.\-]+)'",
                           re.I)
# '!chkimg' summary: '67 errors : !win32kfull (fffff1e0`56a1fccf-fffff1e0`56afa46a)' (bytes that differ from the
# image file); a single '1 error : !nt (...)' line is singular
_CHKIMG_RE = re.compile(r"^\s*(?P<n>\d{1,7}) errors?\s?:\s?!(?P<mod>[\w.\-]{1,64})(?:\s+\([0-9a-fA-F`\-]{1,40}\))?\s*$")
# an image file named by a symbol/checksum warning of the analysis ('*** WARNING: Unable to verify checksum for
# fastrtps-2.6.dll', '... Defaulted to export symbols for C:\\...\\Flash.ocx - ')
_IMAGE_WARN_RE = re.compile(r"(?:Unable to verify (?:checksum|timestamp) for|symbols could not be loaded for|"
                            r"Defaulted to export symbols for) (?P<f>[^\r\n]{1,300})$")
_NOT_MODULE_CHARS = re.compile(r"[^0-9A-Za-z_]")
_SETUP_FAIL_RE = re.compile(r"Exit status:\s*FAILURE", re.I)
_SETUP_SECTION_RE = re.compile(r"^\s*>>>\s*\[|^\s*>>>\s+Section start", re.I)

_CODE_FIELDS = {"FOLLOWUP_IP", "FAULTING_IP", "LAST_CONTROL_TRANSFER", "SYMBOL_NAME"}
MAX_STACK_GAP = 40       # non-frame lines that may separate frames of one listing (kP parameters, warnings)
MAX_BLOCK_LINES = 4000   # lines kept per multi-line field
CHKIMG_LARGE = 16        # corrupted bytes (!chkimg) from which the corruption is LARGE (real outputs: 24, 67)


class _State:
    def __init__(self) -> None:
        self.field: Optional[str] = None
        self.field_line = 0
        self.reg_tag: Optional[str] = None       # what the next register block belongs to
        self.reg_block: Dict[str, int] = {}
        self.reg_block_tag: Optional[str] = None
        self.reg_block_end = -10
        self.last_context: Optional[Tuple[str, int]] = None   # (context name, last line of its dump)
        self.pending_label: Optional[Tuple[str, int]] = None
        self.groups: List[Tuple[str, List[FrameLine]]] = []
        self.cur: Optional[List[FrameLine]] = None
        self.cur_tag = ""
        self.cur_headed = False                  # the listing began with a column header / STACK_TEXT
        self.dropped_frames = 0                  # frame-like lines without any WinDbg stack structure
        self.last_frame_line = -100
        self.kp_open = False
        self.lm_mode: Optional[str] = None       # None / 'loaded' / 'unloaded'
        self.lm_entries: List[LmEntry] = []
        self.kv_key: Optional[str] = None
        self.setup_service: Optional[str] = None


def image_module_name(file_name: str) -> str:
    """WinDbg's module name for an image file: the stem, with every character that is not a letter, digit or
    '_' replaced by '_' (``fastrtps-2.6.dll`` -> ``fastrtps_2_6``, ``x64-msvcr120-ruby230.dll`` -> ``x64_msvcr120_ruby230``)."""
    stem = file_name.rsplit(".", 1)[0] if "." in file_name else file_name
    return _NOT_MODULE_CHARS.sub("_", stem)


def _hexes(text: str) -> List[int]:
    out = []
    for tok in re.split(r"[\s,]+", text.strip()):
        if tok:
            v = parse_hex(tok)
            if v is None:
                return []
            out.append(v)
    return out


def _context_tag_from_field(key: str) -> Optional[str]:
    if key in ("TRAP_FRAME", "CONTEXT", "EXCEPTION_RECORD"):
        return key
    return None


def _field_address(value: str) -> Optional[int]:
    tok = value.strip().split(" ", 1)[0] if value.strip() else ""
    return parse_hex(tok)


def parse_text(text: Union[str, bytes], *, source: Optional[str] = None) -> ParsedText:
    """Parse pasted WinDbg output (``!analyze -v``, ``k*``, ``lm*``, ``r``, ``u``) into a ParsedText.

    Partial input yields what it holds; input with nothing usable raises
    :class:`~dumpkit.errors.TextParseError` (``path=source``).
    """
    if isinstance(text, (bytes, bytearray)):
        raw = bytes(text)
        if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
            text = raw.decode("utf-16", errors="replace")
        else:
            text = raw.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise TextParseError(f"expected text, got {type(text).__name__}", path=source)
    lines, warnings = clean_text(text)
    pt = ParsedText()
    pt.warnings.extend(warnings)
    st = _State()
    n = len(lines)
    i = 0
    while i < n:
        line = lines[i]
        lineno = i + 1
        i += 1
        s = line.strip()
        if not s:
            st.pending_label = None if st.pending_label and lineno - st.pending_label[1] > 2 else st.pending_label
            continue

        # --- commands at a kd> prompt tell what the next register block is --------------
        pm = _PROMPT_RE.match(line)
        if pm:
            cmd = pm.group("cmd").strip()
            _close_group(st)
            st.lm_mode = None
            st.field = None
            if cmd.startswith((".trap", ".cxr")):
                st.reg_tag = ".trap" if cmd.startswith(".trap") else ".cxr"
            elif cmd == "r" or cmd.startswith("r "):
                st.reg_tag = "r"
            if cmd.startswith("lm"):
                st.lm_mode = "loaded"
            continue

        # --- bug check header / arguments ------------------------------------------------
        if _UM_BANNER_RE.match(line):
            pt.user_mode = True
            continue
        m = _BC_HEADER_RE.match(line)
        if m and m.group("name") not in _NOT_FIELDS:
            if pt.bugcheck_name is None:
                pt.bugcheck_name = m.group("name")
                code = int(m.group("code"), 16)
                if pt.bugcheck_code is None:
                    pt.bugcheck_code = code
            continue
        m = _ARG_RE.match(line)
        if m:
            k = int(m.group("n"))
            v = parse_hex(m.group("v"))
            if v is not None and len(pt.parameters) == k - 1:
                pt.parameters.append(v)
                pt.parameter_text.append(m.group("text").strip())
            continue
        m = _SHORT_RE.search(line)
        if m:
            args = [parse_hex(a) for a in m.group("args").split(",")]
            if pt.bugcheck_code is None:
                pt.bugcheck_code = int(m.group("code"), 16)
            if not pt.parameters and args and all(a is not None for a in args):
                pt.parameters = [a for a in args if a is not None][:4]
            continue
        m = _FATAL_RE.search(line)
        if m:
            if pt.bugcheck_code is None:
                pt.bugcheck_code = int(m.group("code"), 16)
            if i < n:
                am = _FATAL_ARGS_RE.match(lines[i])
                if am and not pt.parameters:
                    pt.parameters = _hexes(am.group("args"))[:4]
                    i += 1
            continue
        m = _BC_CODE_RE.match(line)
        if m:
            if pt.bugcheck_code is None:
                pt.bugcheck_code = int(m.group("code"), 16)
            continue
        m = _BC_ARGS_RE.match(line)
        if m:
            if not pt.parameters:
                pt.parameters = _hexes(m.group("args"))[:4]
            continue

        # --- banner lines -----------------------------------------------------------------
        m = _SESSION_RE.match(line)
        if m:
            pt.debug_session_time = pt.debug_session_time or m.group("v")
            continue
        m = _UPTIME_RE.match(line)
        if m:
            pt.system_uptime = pt.system_uptime or m.group("v")
            continue
        m = _PUPTIME_RE.match(line)
        if m:
            pt.fields.setdefault("PROCESS_UPTIME", m.group("v"))
            continue
        m = _BUILT_RE.match(line)
        if m:
            pt.fields.setdefault("BUILT_BY", m.group("v"))
            continue
        m = _KVER_RE.match(line)
        if m:
            pt.fields.setdefault("KERNEL_VERSION", m.group("v").strip())
            continue
        m = _FOLLOWUP_RE.match(line)
        if m:
            pt.followup_owner = pt.followup_owner or m.group("v")
            continue

        # --- KEY_VALUES_STRING pairs -----------------------------------------------------------
        m = _KV_KEY_RE.match(line)
        if m:
            st.kv_key = m.group("k")
            continue
        m = _KV_VAL_RE.match(line)
        if m:
            if st.kv_key is not None:
                pt.key_values.setdefault(st.kv_key, m.group("v"))
            st.kv_key = None
            continue

        # --- exception record lines (mixed-case keys inside EXCEPTION_RECORD / .exr) --------------
        m = _EXC_ADDR_RE.match(line)
        if m:
            pt.exception.setdefault("address", parse_hex(m.group("v")))
            if m.group("sym"):
                pt.exception.setdefault("symbol", m.group("sym"))
            continue
        m = _EXC_CODE_RE.match(line)
        if m:
            pt.exception.setdefault("code", int(m.group("v"), 16))
            if m.group("text"):
                pt.exception.setdefault("text", m.group("text"))
            continue
        m = _EXC_PARAM_RE.match(line)
        if m:
            params = pt.exception.setdefault("parameters", [])
            if isinstance(params, list) and int(m.group("n")) == len(params):
                params.append(parse_hex(m.group("v")))
            continue
        m = _CHKIMG_RE.match(line)
        if m:
            pt.chkimg_errors[m.group("mod")] = pt.chkimg_errors.get(m.group("mod"), 0) + int(m.group("n"))
            continue
        m = _ATTEMPT_RE.search(line)
        if m:
            pt.exception.setdefault("attempt", m.group("what").lower())
            pt.exception.setdefault("attempt_address", parse_hex(m.group("v")))
            continue

        # --- register dumps -----------------------------------------------------------------
        if is_register_line(line):
            pairs = register_pairs(line)
            if lineno - st.reg_block_end > 1 or not st.reg_block:
                _flush_regs(pt, st)
                st.reg_block = {}
                st.reg_block_tag = st.reg_tag or _context_tag_from_field(st.field or "") or "r"
                if st.field in ("TRAP_FRAME", "CONTEXT"):
                    st.reg_block_tag = st.field
            st.reg_block.update(pairs)
            st.reg_block_end = lineno
            continue
        if st.reg_block and lineno - st.reg_block_end > 0:
            _flush_regs(pt, st)

        # --- disassembly ------------------------------------------------------------------------
        lab = label_line(line)
        if lab is not None:
            st.pending_label = (lab, lineno)
            # kept in its block too: under an unreadable instruction ('41414141 ??  ???') it is the only name
            # the input gives the address (FAULTING_IP 'unknown!noop+0:')
            _keep_in_block(pt, st, line)
            continue
        dl = parse_disasm_line(line, None, st.field or "", lineno)
        if dl is not None:
            if st.pending_label and lineno - st.pending_label[1] <= 2:
                dl.label = st.pending_label[0]
            st.pending_label = None
            where = st.field or ""
            if st.last_context is not None and st.last_context[1] >= lineno - 3:
                where = st.last_context[0]
            dl.where = where
            pt.disassembly.append(dl)
            continue

        # --- lm listings --------------------------------------------------------------------------
        if is_lm_header(line):
            _close_group(st)
            st.lm_mode = "loaded"
            continue
        if is_unloaded_header(line):
            _close_group(st)
            st.lm_mode = "unloaded"
            continue
        le = parse_lm_line(line, st.lm_mode is not None)
        if le is not None:
            le.unloaded = st.lm_mode == "unloaded"
            st.lm_entries.append(le)
            continue
        if st.lm_entries:
            det = parse_detail(line)
            if det is not None:
                st.lm_entries[-1].details.setdefault(det[0], det[1])
                continue

        # --- stack frames -------------------------------------------------------------------------
        if is_stack_header(line):
            _close_group(st)
            st.cur = []
            st.cur_headed = True
            st.cur_tag = st.field or "k"
            st.last_frame_line = lineno
            continue
        tf = trap_frame_line(line)
        if tf is not None:
            if st.cur:
                st.cur[-1].trap_frame = tf
            continue
        fl = parse_frame_line(line)
        if fl is not None and st.field in _CODE_FIELDS and fl.index is None and not fl.child_sp:
            fl = None      # 'WwanUsbMp+1c15f' under FOLLOWUP_IP is a label, not a stack
        extra = 0
        if fl is None:
            fl, extra = join_wrapped(lines, i - 1)
            if fl is not None:
                pt.warnings.append(f"line {lineno}: frame wrapped over {extra + 1} lines, joined")
        if fl is not None:
            i += extra
            st.kp_open = fl.opens_params
            _add_frame(st, fl, lineno)
            continue
        if st.kp_open:
            if s.endswith(")") or s == ")":
                st.kp_open = False
            continue
        if is_unwind_warning(line):
            pt.warnings.append(s)
            continue

        # --- KEY: value fields -----------------------------------------------------------------------
        m = _FIELD_RE.match(line)
        if m and m.group("key") not in _NOT_FIELDS:
            key = m.group("key")
            val = m.group("val").strip()
            _close_group(st)
            st.lm_mode = None
            st.field = key
            st.field_line = lineno
            st.reg_tag = None
            if key not in pt.fields:
                pt.fields[key] = val
                pt.blocks[key] = []
            tag = _context_tag_from_field(key)
            if tag in ("TRAP_FRAME", "CONTEXT"):
                st.reg_tag = tag
            if "analyze" not in pt.kinds:
                pt.kinds.append("analyze")
            continue

        # --- setupapi.dev.log lines mailed with the dump ---------------------------------------------
        m = _SETUP_SVC_RE.search(line)
        if m:
            st.setup_service = m.group("a") or m.group("b")
            continue
        if _SETUP_FAIL_RE.search(line):
            if st.setup_service and st.setup_service not in pt.setup_failures:
                pt.setup_failures.append(st.setup_service)
            st.setup_service = None
            continue
        if _SETUP_SECTION_RE.match(line):
            st.setup_service = None

        # --- anything else: body of the current multi-line field, or noise ---------------------------
        _keep_in_block(pt, st, line)
        if (s.startswith("***") and s.strip("* ")) or "WARNING" in s or "ERROR:" in s:
            if len(pt.warnings) < 200:
                pt.warnings.append(s)
        # keep a listing alive across noise, but not forever
        if st.cur is not None and lineno - st.last_frame_line > MAX_STACK_GAP:
            _close_group(st)

    _flush_regs(pt, st)
    _close_group(st)
    _finish(pt, st)
    if not _usable(pt):
        raise TextParseError("no WinDbg output recognised (no bug check, stack, modules, registers or analysis fields)",
                             path=source, expected="!analyze -v, k/kv/kn/kb/kP, lm/lmv or r output")
    return pt


def _keep_in_block(pt: ParsedText, st: _State, line: str) -> None:
    """A line of the current multi-line field's body (FAULTING_IP, TRAP_FRAME...), up to MAX_BLOCK_LINES."""
    if st.field in _MULTILINE and st.field in pt.blocks and len(pt.blocks[st.field]) < MAX_BLOCK_LINES:
        pt.blocks[st.field].append(line)


def _add_frame(st: _State, fl: FrameLine, lineno: int) -> None:
    if st.cur is not None:
        prev = st.cur[-1] if st.cur else None
        restart = prev is not None and fl.index is not None and prev.index is not None and fl.index <= prev.index
        if restart or lineno - st.last_frame_line > MAX_STACK_GAP:
            _close_group(st)
    if st.cur is None:
        st.cur = []
        st.cur_headed = st.field == "STACK_TEXT"
        st.cur_tag = st.field if st.field == "STACK_TEXT" else (st.field or "k")
    st.cur.append(fl)
    st.last_frame_line = lineno


def _structured(frames: List[FrameLine], headed: bool) -> bool:
    """Whether frame-like lines look like a WinDbg stack listing and not like a ``foo!bar+0x10``
    quoted in prose: a column header or STACK_TEXT above them, Child-SP/RetAddr columns, or at
    least two frames numbered 00, 01, ... (``kc``)."""
    if headed:
        return True
    if any(fl.child_sp or fl.return_address for fl in frames):
        return True
    idx = [fl.index for fl in frames if fl.index is not None]
    return len(frames) >= 2 and len(idx) == len(frames) and idx[0] == 0 and \
        all(b == a + 1 for a, b in zip(idx, idx[1:]))


def _close_group(st: _State) -> None:
    if st.cur:
        if _structured(st.cur, st.cur_headed):
            st.groups.append((st.cur_tag, st.cur))
        else:
            st.dropped_frames += len(st.cur)
    st.cur = None
    st.cur_headed = False
    st.kp_open = False


def _flush_regs(pt: ParsedText, st: _State) -> None:
    if not st.reg_block:
        return
    regs = {k: v for k, v in st.reg_block.items() if k != "iopl"}
    tag = st.reg_block_tag or "r"
    valid = None
    if tag in ("TRAP_FRAME", ".trap"):
        # a KTRAP_FRAME saves only the volatile registers (plus rbp/rsp/rip): the rest may be stale
        valid = [r for r in regs if r in ("rax", "rcx", "rdx", "r8", "r9", "r10", "r11", "rbp", "rsp", "rip",
                                          "efl", "cs", "ss", "ds", "es", "fs", "gs")]
    if "eip" in regs and "rip" not in regs:
        # an x86 register dump: a KTRAP_FRAME (x86) saves every integer register
        from ..arch.x86.context import X86Context
        if "efl" in regs:
            regs["eflags"] = regs.pop("efl")
        ctx: Context = X86Context(regs, source=f"text:{tag}")
    else:
        ctx = Context(regs, source=f"text:{tag}", valid=valid)
    addr_field = {"TRAP_FRAME": "TRAP_FRAME", ".trap": "TRAP_FRAME", "CONTEXT": "CONTEXT", ".cxr": "CONTEXT"}.get(tag)
    if addr_field and addr_field in pt.fields:
        ctx.address = _field_address(pt.fields[addr_field])
    name = tag
    k = 2
    while name in pt.contexts:
        name = f"{tag}#{k}"
        k += 1
    pt.contexts[name] = ctx
    st.last_context = (name, st.reg_block_end)
    st.reg_block = {}
    st.reg_block_tag = None
    st.reg_tag = None


def _pick_stack(st: _State) -> Tuple[Stack, List[Stack]]:
    stacks = [build_stack(g) for _, g in st.groups]
    if not stacks:
        return Stack(), []
    for (tag, _), s in zip(st.groups, stacks):
        if tag == "STACK_TEXT":
            return s, stacks
    best = max(range(len(stacks)), key=lambda j: (len(stacks[j]), -j))
    return stacks[best], stacks


def _finish(pt: ParsedText, st: _State) -> None:
    f = pt.fields
    # fields that override the header: BUGCHECK_CODE / P1..P4 are WinDbg's normalised values
    if pt.bugcheck_code is None and "BUGCHECK_CODE" in f:
        pt.bugcheck_code = parse_hex(f["BUGCHECK_CODE"].split()[0]) if f["BUGCHECK_CODE"].split() else None
    if not pt.parameters:
        ps = [parse_hex(f.get(f"BUGCHECK_P{k}", "").split()[0]) if f.get(f"BUGCHECK_P{k}", "").split() else None
              for k in range(1, 5)]
        if all(p is not None for p in ps):
            pt.parameters = [p for p in ps if p is not None]
    if pt.bugcheck_code is not None and "bugcheck" not in pt.kinds:
        pt.kinds.append("bugcheck")

    pt.frames, pt.stacks = _pick_stack(st)
    if st.dropped_frames:
        pt.warnings.append(f"ignored {st.dropped_frames} frame-like line(s) that are not a WinDbg stack listing "
                           f"(no column header, no Child-SP/RetAddr, no frame numbers)")
    if pt.frames:
        pt.kinds.append("stack")

    if st.lm_entries:
        mods = []
        for e in st.lm_entries:
            mod = e.to_module()
            mods.append(mod)
            info = dict(e.details)
            info["module"] = e.module
            info["image_name"] = mod.name
            if e.status:
                info["symbols"] = e.status
            pt.module_versions.setdefault(e.module.lower(), info)
        pt.modules = ModuleList(mods)
        pt.kinds.append("modules")

    if "PROCESS_NAME" in f and f["PROCESS_NAME"]:
        pt.process_name = f["PROCESS_NAME"].split()[0]

    # !chkimg found many bytes of an image changed: WinDbg's MEMORY_CORRUPTOR LARGE (bucket MEMORY_CORRUPTION_LARGE,
    # module and image memory_corruption); seen on 24 bytes (FLTMGR, 0xEF) and 67 bytes (win32kfull, 0x3B)
    if pt.chkimg_errors and "MEMORY_CORRUPTOR" not in f and sum(pt.chkimg_errors.values()) >= CHKIMG_LARGE:
        f["MEMORY_CORRUPTOR"] = "LARGE"

    # the file names of images the input names (WATSON_BKT_MODULE, the process, symbol/checksum warnings): IMAGE_NAME keeps
    # the file's own name (Flash.ocx, fastrtps-2.6.dll) where the module name is the stem with '_' for '-' and '.'
    named = [f[k].split()[0] for k in ("WATSON_BKT_MODULE", "PROCESS_NAME") if f.get(k, "").split()]
    for w in pt.warnings:
        wm = _IMAGE_WARN_RE.search(w)
        if wm:
            named.append(wm.group("f"))
    for raw in named:
        fname = raw.strip().rstrip("-").strip().replace("/", "\\").rsplit("\\", 1)[-1]
        if "." in fname and len(fname) <= 128:
            pt.image_files.setdefault(image_module_name(fname).lower(), fname)

    # exception details from the one-line fields too
    if "EXCEPTION_CODE_STR" in f and "code" not in pt.exception:
        v = parse_hex(f["EXCEPTION_CODE_STR"].split()[0]) if f["EXCEPTION_CODE_STR"].split() else None
        if v is not None:
            pt.exception["code"] = v
    for k in (1, 2):
        key = f"EXCEPTION_PARAMETER{k}"
        if key in f and f[key].split():
            v = parse_hex(f[key].split()[0])
            if v is not None:
                pt.exception.setdefault(f"parameter{k}", v)
    for key in ("READ_ADDRESS", "WRITE_ADDRESS"):
        if key not in f:
            continue
        # the address may follow 'Unable to get ...' lines; a pool region may follow the address
        for ln in [f[key]] + pt.blocks.get(key, []):
            toks = ln.split()
            for j, t in enumerate(toks):
                v = parse_hex(t)
                if v is not None and len(t.replace("`", "")) >= 8:
                    pt.exception.setdefault("memory_address", v)
                    region = " ".join(toks[j + 1:]).strip()
                    if region:
                        pt.exception.setdefault("memory_region", region)
                    break
            if "memory_address" in pt.exception:
                break
        pt.exception.setdefault("memory_access", "read" if key == "READ_ADDRESS" else "write")
        break

    # registers: the context shown with the faulting instruction wins
    if pt.contexts:
        pt.kinds.append("registers")
    pt.faulting_instruction = _pick_fault_instruction(pt)
    if pt.disassembly:
        pt.kinds.append("disasm")
    pt.registers = _pick_context(pt)


def _pick_fault_instruction(pt: ParsedText) -> Optional[DisasmLine]:
    cands = [d for d in pt.disassembly if d.where not in ("FOLLOWUP_IP",)]
    if not cands:
        return None
    ctx_lines = [d for d in cands if d.where in pt.contexts]
    for pref in ("CONTEXT", "TRAP_FRAME", ".cxr", ".trap"):
        for d in ctx_lines:
            if d.where.split("#")[0] == pref:
                return d
    if ctx_lines:
        return ctx_lines[0]
    for d in cands:
        if d.where == "FAULTING_IP":
            return d
    with_ea = [d for d in cands if d.effective_address is not None]
    if with_ea:
        return with_ea[0]
    return cands[0] if len(cands) == 1 else None


def _pick_context(pt: ParsedText) -> Optional[Context]:
    if not pt.contexts:
        return None
    fi = pt.faulting_instruction
    if fi is not None:
        for ctx in pt.contexts.values():
            if ctx.get("rip", ctx.get("eip")) == fi.address:
                return ctx
        if fi.where in pt.contexts:
            return pt.contexts[fi.where]
    for pref in ("CONTEXT", "TRAP_FRAME", ".cxr", ".trap", "r"):
        if pref in pt.contexts:
            return pt.contexts[pref]
    return next(iter(pt.contexts.values()))


def _usable(pt: ParsedText) -> bool:
    return bool(pt.bugcheck_code is not None or pt.frames or len(pt.modules) or pt.contexts or pt.disassembly
                or pt.fields or pt.key_values or pt.debug_session_time or pt.system_uptime or pt.parameters)
