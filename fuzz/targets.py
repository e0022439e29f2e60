"""Fuzz targets: one function per input format, ``target(data: bytes) -> None``.

A target feeds the bytes to one dumpkit front door and touches what a user would.  dumpkit's
own errors (:class:`~dumpkit.errors.DumpError` and subclasses) and warnings are the expected
answer to bad input; anything else escaping a target is a bug (a crasher).  The same targets
are used by the atheris runner (``python -m fuzz.run``) and by the regression test that replays
every committed crasher (tests/test_fuzz_regressions.py), so a crasher found once stays fixed.

Each target also says where its seed inputs come from (:data:`SEEDS`): files in the project
(fixtures/, tests/data/) and, when present, the real files in ../shared/data/real (read in
place, never copied into the repository).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Dict, List

from dumpkit.errors import DumpError

ROOT = Path(__file__).resolve().parent.parent
SHARED_REAL = Path(os.environ.get("DUMPKIT_SHARED", ROOT.parent / "shared")) / "data" / "real"

_TEXT_CAP = 64 << 10      # the fuzzer's inputs are small; longer ones only slow it down


def _touch(obj: object, *names: str) -> None:
    """Read each (lazily computed) attribute: the parse behind it is what the harness exercises."""
    for n in names:
        getattr(obj, n)


def _quiet(fn: Callable[[bytes], None]) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fn(data)
            except DumpError:
                pass                      # the expected answer to bad input
    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


@_quiet
def dump(data: bytes) -> None:
    """The dump opener and what ``dumpkit info``/``modules``/``stack`` touch."""
    import dumpkit

    d = dumpkit.open(data)
    with d:
        d.info()
        repr(d)
        _ = d.bugcheck.name
        for step in (lambda: list(d.modules)[:50], lambda: list(d.unloaded_modules)[:50], lambda: d.contexts,
                     lambda: d.read_virtual(d.header.ps_loaded_module_list or 0, 0x40),
                     lambda: d.stack(symbol_path="", offline=True, max_frames=16)):
            try:
                step()
            except DumpError:
                pass


@_quiet
def pe(data: bytes) -> None:
    """PE images (drivers as found on disk or in a symbol store)."""
    from dumpkit.pe.image import PEImage

    img = PEImage.from_bytes(data, name="fuzz.sys")
    _touch(img, "machine_name", "store_key", "exports", "codeview", "version_info")
    rfs = img.runtime_functions
    for rf in list(rfs)[:20]:
        img.section_for(rf.begin)
    if img.exports:
        img.export_lookup(img.exports[0][0] + 1)


@_quiet
def pdb(data: bytes) -> None:
    """PDB files through the MSF container: identity, sections, publics, procedures, lookups."""
    from dumpkit.symbolize.pdb import Pdb

    with Pdb.from_bytes(data, "fuzz.pdb") as p:
        _touch(p, "age", "identity", "machine", "sections")
        pubs = p.publics()
        _touch(p, "modules")
        p.procedures()
        for rva in [0, 0x1000] + [r for r, _ in pubs[:10]]:
            p.lookup(rva)


@_quiet
def msf(data: bytes) -> None:
    """The MSF 7.00 container alone (stream directory, stream reads)."""
    from dumpkit.symbolize.msf import MsfFile

    m = MsfFile.from_bytes(data, "fuzz.pdb")
    for i in range(min(m.num_streams, 16)):
        try:
            m.stream(i)
        except DumpError:
            pass


@_quiet
def cab(data: bytes) -> None:
    """Cabinet files (compressed symbol-store entries), output capped at 16 MiB."""
    from dumpkit.symbolize.cab import extract_single

    extract_single(data, 16 << 20)


@_quiet
def windbg_text(data: bytes) -> None:
    """Pasted WinDbg output: the parser and the text analysis."""
    from dumpkit.analysis.engine import analyze_text
    from dumpkit.text import parse_text

    text = data[:_TEXT_CAP].decode("utf-8", "replace")
    try:
        parse_text(text)
    except DumpError:
        pass
    a = analyze_text(data[:_TEXT_CAP])
    a.to_dict() if hasattr(a, "to_dict") else repr(a)


def _log_target(parser_name: str, **kw) -> Callable[[bytes], None]:
    def fn(data: bytes) -> None:
        from dumpkit import logs

        parse = getattr(logs, parser_name)
        parse(data[:_TEXT_CAP], **kw)
    fn.__name__ = parser_name
    fn.__doc__ = f"dumpkit.logs.{parser_name} on raw bytes (any encoding, BOM or none)"
    return _quiet(fn)


setupapi = _log_target("parse_setupapi")
panther = _log_target("parse_panther")
cbs = _log_target("parse_panther", kind="cbs")
setupdiag = _log_target("parse_setupdiag")
setup_ini = _log_target("parse_setup_ini")
wer_events = _log_target("parse_wer_setup_events")


@_quiet
def logs_correlate(data: bytes) -> None:
    """Summaries and correlations over whatever the log parsers made of the bytes."""
    from dumpkit.logs import correlate, parse_panther, parse_setupapi, summarize_logs
    from dumpkit.logs.correlate import parse_debug_session_time, parse_uptime

    text = data[:_TEXT_CAP].decode("utf-8", "replace")
    parse_uptime(text)
    parse_debug_session_time(text)
    f = summarize_logs([parse_panther(data[:_TEXT_CAP]), parse_setupapi(data[:_TEXT_CAP])])
    correlate(f, modules=["lwfmgr", "nt"], culprit="lwfmgr")
    f.render()


@_quiet
def zip_bundle(data: bytes) -> None:
    """Case bundles as zip bytes (normal path and the salvage path), small limits."""
    from dumpkit.logs import open_bundle

    b = open_bundle(data, max_member_bytes=4 << 20, max_total_bytes=16 << 20)
    repr(b)
    _touch(b, "damaged")
    for f in b.files:
        repr(f)


TARGETS: Dict[str, Callable[[bytes], None]] = {
    "dump": dump, "pe": pe, "pdb": pdb, "msf": msf, "cab": cab, "windbg_text": windbg_text,
    "setupapi": setupapi, "panther": panther, "cbs": cbs, "setupdiag": setupdiag, "setup_ini": setup_ini,
    "wer_events": wer_events, "logs_correlate": logs_correlate, "zip_bundle": zip_bundle,
}

#: seed globs per target: (base folder, glob); base 'root' is the repository, 'real' ../shared/data/real
SEEDS: Dict[str, List[tuple]] = {
    "dump": [("root", "fixtures/dumps/*.dmp"), ("root", "fixtures/samples/*.dmp"), ("real", "dumps/*.dmp")],
    "pe": [("root", "fixtures/drivers/bin*/*.sys"), ("real", "symstore/**/*.sys"), ("real", "msvc/**/*.exe")],
    "pdb": [("root", "fixtures/drivers/bin*/*.pdb"), ("real", "msvc/**/*.pdb")],
    "msf": [("root", "fixtures/drivers/bin/*.pdb")],
    "cab": [("root", "fuzz/seeds/cab/*")],
    "windbg_text": [("root", "tests/data/text/*.txt"), ("real", "analyze/*")],
    "setupapi": [("root", "tests/data/logs/*setupapi*"), ("real", "logs/*setupapi*")],
    "panther": [("root", "tests/data/logs/*setupact*"), ("real", "logs/*")],
    "cbs": [("real", "logs/*CBS*"), ("real", "logs/*cbs*"), ("root", "tests/data/logs/*setupact*")],
    "setupdiag": [("real", "logs/*SetupDiag*"), ("real", "logs/*setupdiag*"), ("root", "fuzz/seeds/setupdiag/*")],
    "setup_ini": [("root", "fuzz/seeds/setup_ini/*")],
    "wer_events": [("root", "fuzz/seeds/wer_events/*")],
    "logs_correlate": [("root", "tests/data/logs/*"), ("root", "tests/data/text/case1_mail.txt")],
    "zip_bundle": [("root", "fuzz/seeds/zip_bundle/*")],
}

MAX_SEED_BYTES = 8 << 20     #: larger seed files are skipped (the fuzzer would crawl)


def seed_files(name: str) -> List[Path]:
    """The seed files of target ``name`` that exist here (real files only where ../shared is)."""
    out: List[Path] = []
    for base, pattern in SEEDS.get(name, []):
        root = ROOT if base == "root" else SHARED_REAL
        if not root.is_dir():
            continue
        for p in sorted(root.glob(pattern)):
            if p.is_file() and p.stat().st_size <= MAX_SEED_BYTES and p not in out:
                out.append(p)
    return out


def replay(name: str, data: bytes) -> None:
    """Run target ``name`` on ``data`` (the regression test's entry point)."""
    TARGETS[name](data)


__all__ = ["TARGETS", "SEEDS", "seed_files", "replay"]
