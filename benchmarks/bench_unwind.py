"""Unwinder benchmark: frames per second on the real triage dump.

Walks the stack of ../shared/data/real/dumps/triage_x64.dmp from the exception
CONTEXT (frame 08) with the images of ../shared/data/real/symstore, many times:

* ``cfi``: the 17 frames amdppm/Wdf01000 -> nt!IofCallDriver (UNWIND_INFO only);
* ``full``: the whole walk, the nt part by validated stack scan;
* ``decode``: UNWIND_INFO records decoded per second (Wdf01000.sys, cache cold).

Images are opened once (as a session would); every walk starts with fresh
walker caches.  Usage: python benchmarks/bench_unwind.py [--seconds 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REAL = ROOT.parent / "shared" / "data" / "real"


def _rate(fn, seconds: float):
    n_items = 0
    runs = 0
    t0 = time.perf_counter()
    while True:
        n_items += fn()
        runs += 1
        el = time.perf_counter() - t0
        if el >= seconds:
            return n_items / el, runs, el


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--json")
    args = ap.parse_args()
    dump_path = REAL / "dumps" / "triage_x64.dmp"
    if not dump_path.exists():
        print(f"{dump_path} not present: nothing to measure")
        return 0
    import dumpkit
    from dumpkit.pe import PEImage, StoreImages
    from dumpkit.unwind import context_from_bytes, walk_stack

    d = dumpkit.open(dump_path)
    p4 = d.bugcheck.parameters[3]
    ctx = context_from_bytes(d.read_virtual(p4, 0x4D0), "exception", p4)
    images = StoreImages(REAL / "symstore")
    mods = d.modules
    first = walk_stack(d, ctx, mods, images)           # warms the image cache
    results = {}

    def cfi():
        return len(walk_stack(d, ctx, mods, images, max_frames=17))

    def full():
        return len(walk_stack(d, ctx, mods, images))

    wdf = REAL / "symstore" / "Wdf01000.sys" / "a9a9d36ed1000" / "Wdf01000.sys"
    data = wdf.read_bytes()

    def decode():
        img = PEImage.from_bytes(data)
        n = 0
        for rf in img.runtime_functions:
            img.unwind_info_for(rf)
            n += 1
        return n

    def decode_pefile():
        # the peer: pefile parses the same exception directory with its UNWIND_INFO records
        import pefile
        pe = pefile.PE(data=data, fast_load=True)
        pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_EXCEPTION"]])
        return len(getattr(pe, "DIRECTORY_ENTRY_EXCEPTION", []))

    for name, fn in (("cfi", cfi), ("full", full), ("decode", decode), ("decode_pefile", decode_pefile)):
        rate, runs, el = _rate(fn, args.seconds)
        results[name] = {"per_second": round(rate), "runs": runs, "seconds": round(el, 2)}
    results["full_walk_frames"] = len(first)
    print(f"triage_x64 from P4: cfi walk   {results['cfi']['per_second']:>9,} frames/s  (17 frames per walk)")
    print(f"triage_x64 from P4: full walk  {results['full']['per_second']:>9,} frames/s  "
          f"({len(first)} frames per walk, nt by scan)")
    print(f"Wdf01000.sys UNWIND_INFO decode {results['decode']['per_second']:>8,} records/s")
    ratio = results["decode"]["per_second"] / max(1, results["decode_pefile"]["per_second"])
    print(f"  pefile, same records           {results['decode_pefile']['per_second']:>8,} records/s  "
          f"(dumpkit {ratio:.1f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    d.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
