"""Agreement with WinDbg on the real ``!analyze -v`` corpus (tests/data/agreement/).

    python benchmarks/bench_agreement.py            # tables + the cases that disagree
    python benchmarks/bench_agreement.py --json     # one JSON object

Each case's inputs are rendered to WinDbg text without the conclusion lines and analysed by
``dumpkit.analyze``; MODULE_NAME, IMAGE_NAME, FAILURE_BUCKET_ID and FAILURE_ID_HASH are
compared with what WinDbg printed (legacy-engine cases: module and image only).  The
renderer and comparison live in tests/_agreement.py, shared with tests/test_agreement.py.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))            # the checkout's dumpkit, installed or not
sys.path.insert(0, str(ROOT / "tests"))

import _agreement as A  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quiet", action="store_true", help="tables only, no list of disagreeing cases")
    args = ap.parse_args(argv)
    cases = A.load_cases()
    t0 = time.perf_counter()
    results = A.compare_all(cases)
    elapsed = time.perf_counter() - t0
    if args.json:
        out = {
            "cases": len(results), "seconds": round(elapsed, 3),
            "fields": {f: {"agree": sum(1 for r in results if r.agree.get(f)),
                           "counted": sum(1 for r in results if f in r.fields and f in r.expected)} for f in A.FIELDS},
            "all_fields": sum(1 for r in results if r.all_agree),
            "disagreements": {r.case_id: r.mismatches() for r in results if not r.all_agree},
        }
        print(json.dumps(out, indent=1))
        return 0
    print(f"# dumpkit vs WinDbg !analyze -v: {len(results)} real cases, {elapsed:.2f} s\n")
    print(A.table(results))
    if not args.quiet:
        bad = [r for r in results if not r.all_agree]
        if bad:
            print(f"\n{len(bad)} cases disagree:")
            for r in bad:
                print(f"  {r.case_id} [{r.family}]")
                for m in r.mismatches():
                    print(f"      {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
