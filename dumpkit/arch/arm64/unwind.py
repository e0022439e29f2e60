"""ARM64 unwinding from .pdata/.xdata (Microsoft's "ARM64 exception handling" format).

.pdata holds 8-byte entries: the function's start RVA and a word that is either the RVA of
an .xdata record (low two bits 0) or *packed* unwind data (Flag 1: a function with a
canonical prolog; Flag 2: a fragment without a prolog of its own):

    packed word: Flag 1:0, FunctionLength 12:2 (x4 bytes), RegF 15:13, RegI 19:16, H 20,
                 CR 22:21, FrameSize 31:23 (x16 bytes)
    .xdata header: FunctionLength 17:0 (x4), Vers 19:18, X 20, E 21, EpilogCount 26:22,
                   CodeWords 31:27; both counts 0: an extension word (EpilogCount 15:0,
                   CodeWords 23:16); then, unless E, one scope word per epilog
                   (start offset 17:0 x4, start index 31:22); then the unwind-code bytes.

Both forms are turned into one list of :class:`Op` (one per prolog/epilog instruction, in
the order the unwind codes list them: the reverse of the prolog), which :func:`virtual_unwind`
replays to get the caller's registers, honouring a PC inside the prolog (only the
instructions already run are undone) or inside an epilog (only the ones still to run).

Everything is bounded (code bytes per record, epilog scopes) and a malformed record is an
:class:`~dumpkit.errors.UnwindError`.
"""
from __future__ import annotations

import struct
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from .._common import UnwindMemory
from ...errors import DumpError, ImageError, UnwindError

MASK64 = 0xFFFFFFFFFFFFFFFF
MAX_CODE_BYTES = 31 * 4 + 255 * 4        # CodeWords <= 255 with the extension word
MAX_EPILOGS = 0x10000
_U32 = struct.Struct("<I")

ReadFn = Callable[[int, int], bytes]


class Op(NamedTuple):
    """One unwind operation.  ``kind``: alloc, save_reg, save_pair, save_freg, save_fpair,
    set_fp, add_fp, nop, end, end_c, pac, machine_frame, context, trap_frame, ec_context,
    clear_unwound_to_call, save_next (resolved away), save_any."""

    kind: str
    regs: Tuple[str, ...] = ()         # registers saved (save_*), in memory order
    offset: int = 0                    # save_*: offset from SP; alloc/add_fp: bytes
    writeback: bool = False            # pre-indexed: SP moved by ``offset`` (the op's size) first


class UnwindRecord(NamedTuple):
    begin: int                         # function RVA
    length: int                        # bytes
    packed: bool
    fragment: bool                     # packed Flag 2: no prolog of its own
    ops: Tuple[Op, ...]                # prolog ops (the codes from index 0)
    epilogs: Tuple[Tuple[int, int], ...]   # (start offset in the function, index into ``code_ops``)
    code_ops: Tuple[Op, ...]           # all codes decoded from byte 0 (epilog indices point into it)
    code_index: Tuple[int, ...]        # byte index of each op in ``code_ops``
    has_handler: bool = False
    fields: Tuple[Tuple[str, int], ...] = ()    # packed fields / header fields, for display


def _x(n: int) -> str:
    return {29: "fp", 30: "lr"}.get(n, f"x{n}")


# ------------------------------------------------------------------------- unwind codes
def decode_codes(data: bytes, limit: int = MAX_CODE_BYTES) -> Tuple[List[Op], List[int]]:
    """Decode unwind-code bytes into ops (and the byte index of each), up to the end of ``data``."""
    ops: List[Op] = []
    idx: List[int] = []
    i = 0
    n = min(len(data), limit)
    while i < n:
        b = data[i]
        start = i

        def nxt(k: int, i: int = i, b: int = b, start: int = start) -> int:   # called at once: bind this op's values
            if i + k > n:
                raise UnwindError(f"unwind code {b:#04x} at byte {start} is cut short", offset=start)
            return int.from_bytes(data[i:i + k], "big")
        if b < 0x20:                                   # alloc_s 000xxxxx
            op = Op("alloc", offset=(b & 0x1F) * 16); i += 1
        elif b < 0x40:                                 # save_r19r20_x 001zzzzz
            op = Op("save_pair", ("x19", "x20"), (b & 0x1F) * 8, True); i += 1
        elif b < 0x80:                                 # save_fplr 01zzzzzz
            op = Op("save_pair", ("fp", "lr"), (b & 0x3F) * 8); i += 1
        elif b < 0xC0:                                 # save_fplr_x 10zzzzzz
            op = Op("save_pair", ("fp", "lr"), ((b & 0x3F) + 1) * 8, True); i += 1
        elif b < 0xC8:                                 # alloc_m 11000xxx xxxxxxxx
            v = nxt(2); op = Op("alloc", offset=(v & 0x7FF) * 16); i += 2
        elif b < 0xD0:                                 # save_regp(_x) 11001Wxx xxzzzzzz
            v = nxt(2); r = 19 + ((v >> 6) & 0xF); z = v & 0x3F
            wb = bool(b & 0x04)
            op = Op("save_pair", (_x(r), _x(r + 1)), (z + 1) * 8 if wb else z * 8, wb); i += 2
        elif b < 0xD4:                                 # save_reg 110100xx xxzzzzzz
            v = nxt(2); r = 19 + ((v >> 6) & 0xF)
            op = Op("save_reg", (_x(r),), (v & 0x3F) * 8); i += 2
        elif b < 0xD6:                                 # save_reg_x 1101010x xxxzzzzz
            v = nxt(2); r = 19 + ((v >> 5) & 0xF)
            op = Op("save_reg", (_x(r),), ((v & 0x1F) + 1) * 8, True); i += 2
        elif b < 0xD8:                                 # save_lrpair 1101011x xxzzzzzz
            v = nxt(2); r = 19 + 2 * ((v >> 6) & 0x7)
            op = Op("save_pair", (_x(r), "lr"), (v & 0x3F) * 8); i += 2
        elif b < 0xDC:                                 # save_fregp(_x) 110110Wx xxzzzzzz
            v = nxt(2); r = 8 + ((v >> 6) & 0x7); z = v & 0x3F
            wb = bool(b & 0x02)
            op = Op("save_fpair", (f"d{r}", f"d{r + 1}"), (z + 1) * 8 if wb else z * 8, wb); i += 2
        elif b < 0xDE:                                 # save_freg 1101110x xxzzzzzz
            v = nxt(2); r = 8 + ((v >> 6) & 0x7)
            op = Op("save_freg", (f"d{r}",), (v & 0x3F) * 8); i += 2
        elif b == 0xDE:                                # save_freg_x 11011110 xxxzzzzz
            v = nxt(2); r = 8 + ((v >> 5) & 0x7)
            op = Op("save_freg", (f"d{r}",), ((v & 0x1F) + 1) * 8, True); i += 2
        elif b == 0xDF:                                # alloc_z (SVE): not supported
            raise UnwindError("alloc_z (SVE stack allocation) is not supported", offset=start)
        elif b == 0xE0:                                # alloc_l 11100000 x(24)
            v = nxt(4); op = Op("alloc", offset=(v & 0xFFFFFF) * 16); i += 4
        elif b == 0xE1:
            op = Op("set_fp"); i += 1
        elif b == 0xE2:                                # add_fp 11100010 xxxxxxxx
            v = nxt(2); op = Op("add_fp", offset=(v & 0xFF) * 8); i += 2
        elif b == 0xE3:
            op = Op("nop"); i += 1
        elif b == 0xE4:
            op = Op("end"); i += 1
        elif b == 0xE5:
            op = Op("end_c"); i += 1
        elif b == 0xE6:
            op = Op("save_next"); i += 1
        elif b == 0xE7:                                # save_any_reg 11100111 ... (3 bytes)
            nxt(3); op = Op("save_any"); i += 3
        elif b == 0xE8:
            op = Op("trap_frame"); i += 1
        elif b == 0xE9:
            op = Op("machine_frame"); i += 1
        elif b == 0xEA:
            op = Op("context"); i += 1
        elif b == 0xEB:
            op = Op("ec_context"); i += 1
        elif b == 0xEC:
            op = Op("clear_unwound_to_call"); i += 1
        elif b == 0xFC:
            op = Op("pac"); i += 1
        else:
            raise UnwindError(f"reserved unwind code {b:#04x} at byte {start}", offset=start)
        ops.append(op)
        idx.append(start)
    return ops, idx


def resolve_save_next(ops: List[Op]) -> List[Op]:
    """Replace each save_next by the save it stands for: the next register pair after the
    save that precedes it in the prolog (which follows it in the code list), 16 bytes higher."""
    out = list(ops)
    for j in range(len(out) - 1, -1, -1):       # prolog order = reverse list order
        if out[j].kind != "save_next":
            continue
        k = j + 1
        if k >= len(out) or out[k].kind not in ("save_pair", "save_fpair"):
            raise UnwindError("save_next without a register-pair save before it in the prolog")
        prev = out[k]
        base = 0 if prev.writeback else prev.offset
        r1 = prev.regs[1]
        if prev.kind == "save_pair":
            n = {"fp": 29, "lr": 30}.get(r1, None)
            n = int(r1[1:]) if n is None else n
            regs = (_x(n + 1), _x(n + 2))
        else:
            n = int(r1[1:])
            regs = (f"d{n + 1}", f"d{n + 2}")
        out[j] = Op(prev.kind, regs, base + 16, False)
    return out


def _prolog_ops(ops: List[Op]) -> List[Op]:
    out: List[Op] = []
    for op in ops:
        if op.kind in ("end", "end_c"):
            break
        out.append(op)
    return out


# ------------------------------------------------------------------------- packed data
def packed_ops(word: int) -> Tuple[List[Op], Dict[str, int]]:
    """The ops (unwind order) of a packed .pdata word's canonical prolog."""
    regf = (word >> 13) & 7
    regi = (word >> 16) & 0xF
    h = (word >> 20) & 1
    cr = (word >> 21) & 3
    frame = ((word >> 23) & 0x1FF) * 16
    fields = {"Flag": word & 3, "FunctionLength": ((word >> 2) & 0x7FF) * 4, "RegF": regf, "RegI": regi,
              "H": h, "CR": cr, "FrameSize": frame}
    if regi > 10:
        raise UnwindError(f"packed unwind data: RegI {regi} > 10")
    if cr == 1 and regi == 1:
        raise UnwindError("packed unwind data: CR=1 with RegI=1 has no defined prolog")
    int_sz = 8 * regi + (8 if cr == 1 else 0)
    fp_regs = regf + 1 if regf else 0
    fp_sz = 8 * fp_regs
    sav_sz = (int_sz + fp_sz + 64 * h + 15) & ~15
    loc_sz = frame - sav_sz
    if loc_sz < 0:
        raise UnwindError(f"packed unwind data: FrameSize {frame} smaller than the save area {sav_sz}")
    ops: List[Op] = []                             # built in unwind order (last prolog instruction first)
    chained = cr in (2, 3)
    if chained:
        ops.append(Op("set_fp"))
        if loc_sz <= 512:
            ops.append(Op("save_pair", ("fp", "lr"), loc_sz, True))
        else:
            ops.append(Op("save_pair", ("fp", "lr"), 0))
    if loc_sz > 4080:
        ops.append(Op("alloc", offset=loc_sz - 4080))
        ops.append(Op("alloc", offset=4080))
    elif (not chained and loc_sz > 0) or loc_sz > 512:
        ops.append(Op("alloc", offset=loc_sz))
    if h:
        ops += [Op("nop"), Op("nop"), Op("nop")]  # stp x6,x7 / x4,x5 / x2,x3: parameters, not restored
        if regi or regf or cr == 1:
            ops.append(Op("nop"))
        else:
            ops.append(Op("alloc", offset=sav_sz))  # stp x0,x1,[sp,#-savsz]!: only the SP matters
    pairs_f = (fp_regs + 1) // 2
    for i in range(pairs_f - 1, -1, -1):
        if i == pairs_f - 1 and fp_regs % 2:
            ops.append(Op("save_freg", (f"d{8 + 2 * i}",), int_sz + 16 * i))
        elif i == 0 and regi == 0 and cr != 1:
            ops.append(Op("save_fpair", (f"d{8 + 2 * i}", f"d{9 + 2 * i}"), sav_sz, True))
        else:
            ops.append(Op("save_fpair", (f"d{8 + 2 * i}", f"d{9 + 2 * i}"), int_sz + 16 * i))
    if cr == 1 and regi % 2 == 0:
        if regi == 0:
            ops.append(Op("save_reg", ("lr",), sav_sz, True))
        else:
            ops.append(Op("save_reg", ("lr",), int_sz - 8))
    pairs_i = (regi + 1) // 2
    for i in range(pairs_i - 1, -1, -1):
        r = 19 + 2 * i
        if i == pairs_i - 1 and regi % 2:
            if cr == 1:
                ops.append(Op("save_pair", (_x(r), "lr"), 16 * i))
            elif i == 0:
                ops.append(Op("save_reg", (_x(r),), sav_sz, True))
            else:
                ops.append(Op("save_reg", (_x(r),), 16 * i))
        elif i == 0:
            ops.append(Op("save_pair", ("x19", "x20"), sav_sz, True))
        else:
            ops.append(Op("save_pair", (_x(r), _x(r + 1)), 16 * i))
    if cr == 2:
        ops.append(Op("pac"))
    return ops, fields


# ------------------------------------------------------------------------- records
def read_pdata(image) -> List[Tuple[int, int]]:
    """(begin RVA, unwind word) of every 8-byte .pdata entry of an ARM64 image."""
    from ...pe.image import DIR_EXCEPTION, MAX_RUNTIME_FUNCTIONS
    rva, size = image.directory(DIR_EXCEPTION)
    if not rva or size < 8:
        return []
    n = min(size // 8, MAX_RUNTIME_FUNCTIONS)
    raw = image.read_rva_partial(rva, 8 * n)
    # pages the image lacks read as zeros and an entry with begin 0 is never valid: a tiny file that
    # declares a huge exception directory must not cost millions of entries (fuzz/crashers/pe)
    n = min(len(raw) // 8, (len(raw.rstrip(b"\0")) + 7) // 8)
    return [(b, u) for b, u in struct.iter_unpack("<II", raw[:8 * n]) if b]


def function_length(image, word: int) -> int:
    """Bytes covered by a .pdata entry (from the packed word or the .xdata header)."""
    if word & 3:
        return ((word >> 2) & 0x7FF) * 4
    try:
        head = _U32.unpack(image.read_rva(word, 4))[0]
    except ImageError:
        return 0
    return (head & 0x3FFFF) * 4


def parse_record(image, begin: int, word: int) -> UnwindRecord:
    """Decode the unwind data of the function at ``begin`` (packed word or .xdata RVA)."""
    flag = word & 3
    if flag in (1, 2):
        ops, fields = packed_ops(word)
        length = fields["FunctionLength"]
        # a canonical (unchained) packed function ends with the mirror of its prolog and a ret
        packed_epilogs: Tuple[Tuple[int, int], ...] = \
            ((length - 4 * (len(ops) + 1), 0),) if flag == 1 and fields["CR"] in (0, 1) else ()
        return UnwindRecord(begin, length, True, flag == 2, tuple(ops), packed_epilogs, tuple(ops),
                            tuple(range(len(ops))), False, tuple(fields.items()))
    if flag == 3:
        raise UnwindError(f"function {begin:#x}: .pdata flag 3 is reserved", offset=begin)
    try:
        head = _U32.unpack(image.read_rva(word, 4))[0]
        length = (head & 0x3FFFF) * 4
        vers = (head >> 18) & 3
        has_x = bool(head >> 20 & 1)
        e = bool(head >> 21 & 1)
        epi = (head >> 22) & 0x1F
        words = (head >> 27) & 0x1F
        pos = word + 4
        if epi == 0 and words == 0:
            ext = _U32.unpack(image.read_rva(pos, 4))[0]
            epi, words = ext & 0xFFFF, (ext >> 16) & 0xFF
            pos += 4
        if vers != 0:
            raise UnwindError(f"function {begin:#x}: .xdata version {vers} is unknown", offset=word)
        scopes: List[Tuple[int, int]] = []
        if not e:
            if epi > MAX_EPILOGS:
                raise UnwindError(f"function {begin:#x}: {epi} epilog scopes", offset=word)
            raw = image.read_rva(pos, 4 * epi) if epi else b""
            for (s,) in struct.iter_unpack("<I", raw):
                scopes.append(((s & 0x3FFFF) * 4, s >> 22))
            pos += 4 * epi
        codes = image.read_rva(pos, 4 * words) if words else b""
    except ImageError as exc:
        raise UnwindError(f"function {begin:#x}: .xdata unreadable: {exc.message}", offset=word) from None
    ops, idx = decode_codes(codes)
    ops = resolve_save_next(ops)
    byte_to_op = {b: k for k, b in enumerate(idx)}
    epilogs: List[Tuple[int, int]] = []
    if e:
        k = byte_to_op.get(epi)
        if k is not None:
            n = len(_prolog_ops(ops[k:])) + 1          # + the ret
            epilogs.append((length - 4 * n, k))
    else:
        for start, bidx in scopes:
            k = byte_to_op.get(bidx)
            if k is None:
                raise UnwindError(f"function {begin:#x}: epilog code index {bidx} is not an op boundary",
                                  offset=word)
            epilogs.append((start, k))
    header = (("FunctionLength", length), ("X", int(has_x)), ("E", int(e)), ("EpilogCount", epi),
              ("CodeWords", words))
    return UnwindRecord(begin, length, False, False, tuple(_prolog_ops(ops)), tuple(epilogs), tuple(ops),
                        tuple(idx), has_x, header)


def op_text(op: Op) -> str:
    """The prolog instruction an op stands for, in A64 assembly ('stp x19, x20, [sp, #-32]!')."""
    k = op.kind
    if k == "alloc":
        return f"sub sp, sp, #{op.offset}"
    if k in ("save_pair", "save_reg", "save_fpair", "save_freg"):
        mn = "stp" if len(op.regs) == 2 else "str"
        regs = ", ".join(op.regs)
        mem = f"[sp, #-{op.offset}]!" if op.writeback else f"[sp, #{op.offset}]"
        return f"{mn} {regs}, {mem}"
    if k == "set_fp":
        return "mov fp, sp"
    if k == "add_fp":
        return f"add fp, sp, #{op.offset}"
    if k == "save_next":
        return "save next"
    return k


# ------------------------------------------------------------------------- unwinding
class UnwindStep(NamedTuple):
    regs: Dict[str, int]
    record: Optional[UnwindRecord]
    restored: Tuple[str, ...]
    where: str                           # 'body', 'prolog', 'epilog', 'leaf'


def execute(ops, regs: Dict[str, int], mem: UnwindMemory) -> Tuple[Dict[str, int], List[str], bool]:
    """Undo ``ops`` (in list order) on a copy of ``regs``; (regs, restored, pc_set)."""
    new = dict(regs)
    restored: List[str] = []
    for op in ops:
        k = op.kind
        if k in ("end", "end_c"):
            break
        if k == "alloc":
            new["sp"] = (new["sp"] + op.offset) & MASK64
        elif k in ("save_pair", "save_reg", "save_fpair", "save_freg"):
            base = new["sp"] if op.writeback else new["sp"] + op.offset
            for n, r in enumerate(op.regs):
                v = mem.u64(base + 8 * n)
                if r.startswith("d"):
                    new["v" + r[1:]] = v
                else:
                    new[r] = v
                restored.append(r)
            if op.writeback:
                new["sp"] = (new["sp"] + op.offset) & MASK64
        elif k == "set_fp":
            new["sp"] = new["fp"]
        elif k == "add_fp":
            new["sp"] = (new["fp"] - op.offset) & MASK64
        elif k == "machine_frame":
            sp = new["sp"]
            new["sp"], new["pc"] = mem.u64(sp), mem.u64(sp + 8)
            return new, restored, True
        elif k == "context":
            from .frames import CONTEXT_SIZE, context_from_bytes
            try:
                data = mem.read(new["sp"], CONTEXT_SIZE)
            except DumpError as exc:
                raise UnwindError(f"CONTEXT on the stack unreadable: {exc.message}") from None
            ctx = context_from_bytes(data, "unwind", new["sp"])
            new.update(ctx.regs)
            return new, restored + ["all"], True
        elif k in ("trap_frame", "ec_context", "save_any"):
            raise UnwindError(f"unwind op {k} is not supported")
        # nop, pac, clear_unwound_to_call: nothing to undo
    return new, restored, False


def virtual_unwind(image, image_base: int, regs: Dict[str, int], read: ReadFn, *,
                   exact: bool = True) -> Optional[UnwindStep]:
    """One ARM64 frame: the caller's registers, or None when the image has no entry for the PC."""
    pc = regs["pc"]
    rva = pc - image_base
    look = rva if exact else rva - 4
    f = image.function_for(look)
    if f is None:
        if exact and image.runtime_functions:
            # no .pdata entry: a leaf (it saved nothing and left SP alone); its caller is in lr
            new = dict(regs)
            new["pc"] = regs.get("lr", 0)
            return UnwindStep(new, None, (), "leaf")
        return None
    rec = record_for(image, f.begin, f.unwind_rva)
    off = rva - rec.begin
    mem = UnwindMemory(read)
    where = "body"
    ops: Tuple[Op, ...] = rec.ops
    if exact and not rec.fragment:
        n = len(rec.ops)
        if 0 <= off < 4 * n:                           # inside the prolog: undo what ran
            where = "prolog"
            ops = rec.ops[n - off // 4:]
        else:
            for start, k in rec.epilogs:
                seq = _prolog_ops(list(rec.code_ops[k:]))
                if start <= off < start + 4 * (len(seq) + 1):
                    where = "epilog"
                    done = (off - start) // 4          # epilog instructions already executed
                    ops = tuple(seq[done:])
                    break
    new, restored, pc_set = execute(ops, regs, mem)
    if not pc_set:
        new["pc"] = new.get("lr", 0)
    return UnwindStep(new, rec, tuple(restored), where)


def record_for(image, begin: int, word: int) -> UnwindRecord:
    cache = image.__dict__.setdefault("_arm64_unwind_cache", {})
    rec = cache.get(begin)
    if rec is None:
        rec = cache[begin] = parse_record(image, begin, word)
    return rec
