"""ARM64 unwinding: .pdata/.xdata decoding against llvm-readobj, and walks checked against unicorn.

Truth:
* ``fixtures/drivers/bin_arm64/arm64drv.unwind.txt``: llvm-readobj --unwind's listing of the
  compiled fixture (a peer decoder of the same records), written by build_arm64.sh;
* the unicorn emulation of the compiled fixture (fixtures/emulate_arm64.py): the return address
  and SP recorded at every BL, and the registers at the fault or at a chosen instruction;
* the dump is written by fixtures/factory_arm64.py with its own ARM64 structure definitions.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import dumpkit
from dumpkit.arch.arm64.unwind import decode_codes, op_text, packed_ops, parse_record, virtual_unwind
from dumpkit.pe import PEImage

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "fixtures" / "drivers" / "bin_arm64"
pytest.importorskip("unicorn")


def _norm(text: str) -> str:
    t = text.strip().lower().replace("x29", "fp").replace("x30", "lr")
    return re.sub(r"\s+", " ", t)


def _llvm_blocks():
    """[(function RVA, {'FunctionLength': n, ...}, [prologue lines])] from llvm-readobj's listing."""
    out = []
    cur = None
    for line in (BIN / "arm64drv.unwind.txt").read_text().splitlines():
        s = line.strip()
        m = re.match(r"Function: 0x([0-9A-Fa-f]+)", s)
        if m:
            cur = [int(m.group(1), 16) - 0x1C0000000, {}, [], False]
            out.append(cur)
            continue
        if cur is None:
            continue
        m = re.match(r"(FunctionLength|RegF|RegI|CR|FrameSize|EpilogueOffset): (\d+)", s)
        if m:
            cur[1][m.group(1)] = int(m.group(2))
        if s.startswith("Prologue ["):
            cur[3] = True
            continue
        if cur[3]:
            if s == "]":
                cur[3] = False
                continue
            cur[2].append(s.split(";", 1)[1] if ";" in s else s)
    return [(a, f, lines) for a, f, lines, _ in out]


@pytest.fixture(scope="module")
def image():
    return PEImage.from_file(BIN / "arm64drv.sys")


def test_pdata_and_unwind_records_match_llvm_readobj(image):
    blocks = _llvm_blocks()
    rfs = image.runtime_functions
    assert [f.begin for f in rfs] == [a for a, _, _ in blocks]
    kinds = set()
    for f, (addr, fields, lines) in zip(rfs, blocks):
        rec = parse_record(image, f.begin, f.unwind_rva)
        assert rec.length == fields["FunctionLength"] == f.end - f.begin
        if rec.packed:
            kinds.add("packed")
            got = [op_text(op) for op in packed_ops(f.unwind_rva)[0]] + ["end"]
            d = dict(rec.fields)
            assert (d["RegF"], d["RegI"], d["CR"], d["FrameSize"]) == \
                (fields["RegF"], fields["RegI"], fields["CR"], fields["FrameSize"])
        else:
            kinds.add("xdata")
            raw = image.read_rva(f.unwind_rva, 4)
            words = int.from_bytes(raw, "little") >> 27
            codes = image.read_rva(f.unwind_rva + 4, 4 * words)
            got = [op_text(op) for op in decode_codes(codes)[0]]
            got = got[:got.index("end") + 1]
        assert [_norm(g) for g in got] == [_norm(x) for x in lines if x.strip()], hex(addr)
    assert kinds == {"packed", "xdata"}


@pytest.fixture(scope="module")
def emulation():
    from fixtures.emulate_arm64 import run
    return run()


@pytest.mark.parametrize("kind", ["full", "bitmap"])
def test_emulated_crash_unwinds_exactly(kind, emulation, tmp_path):
    from fixtures.factory_arm64 import write_emulated_dump
    em = emulation
    assert em.fault_address == 8                  # ldr w0, [x0, #8] with x0 = NULL
    info = write_emulated_dump(tmp_path / "arm64.dmp", em, kind=kind)
    d = dumpkit.open(tmp_path / "arm64.dmp")
    assert d.arch.name == "arm64" and d.dump_type == kind
    assert d.translate(em.image.base) == info["image_pa"]
    assert d.read_virtual(em.image.base, 2) == b"MZ"
    assert [m.name for m in d.modules] == ["arm64drv.sys"]
    ctx = d.contexts["exception"]
    assert ctx.regs["pc"] == em.regs["pc"] and ctx.regs["sp"] == em.regs["sp"]
    st = d.stack("exception", offline=True)
    assert [(f.instruction, f.child_sp) for f in st] == em.expected_frames()
    assert [f.trust for f in st] == ["context"] + ["cfi"] * (len(st) - 1)
    # the functions on the stack, innermost first, as the source calls them
    names = dict(em.symbols)
    starts = sorted(names)

    def func(pc: int, exact: bool) -> str:
        rva = pc - em.image.base - (0 if exact else 4)
        return names[max(s for s in starts if s <= rva)]
    assert [func(f.instruction, f.index == 0) for f in st] == \
        ["armReadSignature", "armValidate", "armWorker", "armDispatch", "DriverEntry"]
    # the fault in plain words
    from dumpkit.analysis.dumpsource import analyze_dump
    a = analyze_dump(d, "", offline=True)
    fault = a.to_json()["fault"]
    assert "x0" in fault["explanation"] and "ldr w0, [x0, #8]" in fault["explanation"]
    assert fault["kind"] == "near_null_deref"


def _prolog_epilog_points(image):
    """RVAs inside the prologs and epilogs of the functions with unwind data."""
    out = []
    for f in image.runtime_functions:
        rec = parse_record(image, f.begin, f.unwind_rva)
        n = len(rec.ops)
        out += [f.begin + 4 * i for i in range(n + 1)]
        for start, _k in rec.epilogs:
            out += [f.begin + start + 4 * i for i in range(n + 1)]
    return sorted(set(out))


def test_unwinding_inside_prologs_and_epilogs_matches_the_emulator(image):
    from fixtures.emulate_arm64 import STACK_BASE, run
    checked = 0
    for rva in _prolog_epilog_points(image):
        em = run(stop_at=rva)
        if em.fault_address != 0 or not em.calls:
            continue                              # never reached before the fault
        stack = em.stack

        def read(va: int, size: int, stack: bytes = stack) -> bytes:
            off = va - STACK_BASE
            if 0 <= off and off + size <= len(stack):
                return stack[off:off + size]
            raise dumpkit.MemoryReadError("outside the emulated stack", address=va)
        step = virtual_unwind(image, em.image.base, em.regs, read, exact=True)
        assert step is not None
        want = em.calls[-1]
        assert (step.regs["pc"], step.regs["sp"]) == (want.return_address, want.sp), (hex(rva), step.where)
        checked += 1
    assert checked >= 15


def test_arm64_page_tables_blocks_pages_and_holes(tmp_path):
    """Translations of an ARM64 full dump equal the factory's own walk (4 KB pages, 2 MiB blocks)."""
    from fixtures import factory as F
    from fixtures.factory_arm64 import Arm64AddressSpace, arm64_context
    mem = F.PhysicalMemory()
    aspace = Arm64AddressSpace(mem)
    blk_pfn = mem.alloc_pages(512, align_pages=512)
    aspace.map(0xFFFFF80400000000, blk_pfn * 0x1000, 0x200000, page_size=0x200000)
    pa = aspace.map_new(0xFFFFE00000010000, b"page" * 0x400)
    mem.write(blk_pfn * 0x1000 + 0x1234, b"block")
    user = aspace.map_new(0x00007FF600000000, b"user")
    # a Windows software PTE (invalid, non-zero) next to the mapped page
    table = aspace._table(0xFFFFE00000011000, 3, True)
    mem.write_u64(table + ((0xFFFFE00000011000 >> 12) & 0x1FF) * 8, 0x12340080)
    ctx = arm64_context({"pc": 0xFFFFF80400001000, "sp": 0xFFFFE00000010F00})
    F.write_full_dump(tmp_path / "pt.dmp", mem, F.HeaderFields(machine_image_type=0xAA64, context=ctx,
                                                               kd_debugger_data_block=None))
    d = dumpkit.open(tmp_path / "pt.dmp")
    for va in (0xFFFFF80400000000, 0xFFFFF80400001234, 0xFFFFF804001FFFF8, 0xFFFFE00000010000,
               0xFFFFE00000010FF8, 0x00007FF600000000):
        assert d.translate(va) == aspace.translate(va), hex(va)
    assert d.read_virtual(0xFFFFF80400001234, 5) == b"block" and d.read_virtual(0x00007FF600000000, 4) == b"user"
    assert d.translate(0xFFFFE00000010000) == pa and d.translate(0x00007FF600000000) == user
    with pytest.raises(dumpkit.PagedOutError):
        d.translate(0xFFFFE00000011000)
    with pytest.raises(dumpkit.PageNotPresentError):
        d.translate(0xFFFFE00000012000)
    with pytest.raises(dumpkit.TranslationError, match="not a valid ARM64 address"):
        d.translate(0x0000800000000000)


def test_emulated_stack_symbolized_from_the_pdb(emulation, tmp_path):
    """WinDbg's `k` with the linker's PDB on the symbol path: names and offsets from the map file."""
    import shutil
    from fixtures.factory_arm64 import write_emulated_dump
    em = emulation
    write_emulated_dump(tmp_path / "arm64.dmp", em)
    cv = PEImage.from_file(BIN / "arm64drv.sys").codeview
    store = tmp_path / "store" / "arm64drv.pdb" / cv.key
    store.mkdir(parents=True)
    shutil.copy(BIN / "arm64drv.pdb", store / "arm64drv.pdb")
    d = dumpkit.open(tmp_path / "arm64.dmp")
    st = d.stack("exception", str(tmp_path / "store"), offline=True)
    starts = {name: rva for rva, name in em.symbols}
    want = []
    for name, (pc, _sp) in zip(["armReadSignature", "armValidate", "armWorker", "armDispatch", "DriverEntry"],
                               em.expected_frames()):
        off = pc - em.image.base - starts[name]
        want.append(f"arm64drv!{name}" + (f"+{off:#x}" if off else ""))
    assert [f.call_site for f in st] == want
    assert str(st).splitlines()[2].startswith("01 ffffe000`12343ed0 fffff805`7a201124")
