"""dumpkit.batch on a real 2-worker Dask LocalCluster over a generated corpus.

Truth: the bug check codes are the ones written into the factory dumps' headers (offset 0x38,
shared/reference/dumpformat.md section 1); sha256 comes from hashlib; the per-input verdicts are
what the public API (dumpkit.analyze, itself checked against WinDbg elsewhere) says for that file
alone; the WER fields are the ones written into Report.wer; case 2's culprit lwfmgr.sys is the
support engineers' conclusion (shared/seeds/cases.md).  One cluster serves the whole module.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("distributed")
pytest.importorskip("pyarrow")

import dumpkit  # noqa: E402
from dumpkit import batch  # noqa: E402
from dumpkit.batch.inputs import parse_wer_report, recognise  # noqa: E402
from dumpkit.logs.bundle import ZipReader  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "fixtures" / "samples" / "case2_lwfmgr.dmp"
TRIAGE = ROOT / "fixtures" / "dumps" / "case2_mode0_triage.dmp"
MEM_LIMIT = 512 << 20


def _with_bugcheck(data: bytes, code: int) -> bytes:
    b = bytearray(data)
    struct.pack_into("<I", b, 0x38, code)          # DUMP_HEADER64.BugCheckCode
    return bytes(b)


def _wer_report() -> bytes:
    text = ("Version=1\r\nEventType=BlueScreen\r\nEventTime=133541169217978399\r\nReportType=4\r\nConsent=1\r\n"
            "ReportIdentifier=5d1c0ffe-0000-4e11-9abc-0123456789ab\r\n"
            "Response.BucketId=0x3b_c0000005_ndis!ndisTestBucket\r\nResponse.LegacyBucketId=1234567890\r\n"
            "Response.type=4\r\nSig[0].Name=BCCode\r\nSig[0].Value=3b\r\nSig[1].Name=BCP1\r\n"
            "Sig[1].Value=00000000C0000005\r\nFriendlyEventName=Shut down unexpectedly\r\nAppName=Windows\r\n")
    return b"\xff\xfe" + text.encode("utf-16-le")


def _damaged_zip(members: dict, damage: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    data = bytearray(buf.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        info = z.getinfo(damage)
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    mid = start + info.compress_size // 2
    data[mid: mid + 64] = bytes(64)                   # wipe compressed bytes in the middle of the member
    return bytes(data)


@pytest.fixture(scope="module")
def client():
    old = {k: os.environ.get(k) for k in ("DUMPKIT_BATCH_TEST_HANG", "DUMPKIT_BATCH_TEST_HOG")}
    os.environ["DUMPKIT_BATCH_TEST_HANG"] = "hang-me"     # test hooks, read by the analysis processes
    os.environ["DUMPKIT_BATCH_TEST_HOG"] = "hog-me"
    from distributed import Client
    from dumpkit.batch.engine import local_cluster
    cluster = local_cluster(2)
    c = Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    sample = SAMPLE.read_bytes()
    triage = TRIAGE.read_bytes()
    files = {
        "case2_lwfmgr.dmp": sample,
        "bc/d1.dmp": _with_bugcheck(triage, 0xD1),
        "bc/1e.dmp": _with_bugcheck(triage, 0x1E),
        "bc/2_pasted.log": (ROOT / "tests/data/text/case2_stack.txt").read_bytes(),   # WinDbg text, odd name
        "text/mail.txt": (ROOT / "tests/data/text/case1_mail.txt").read_bytes(),
        "bad/truncated_header.dmp": sample[:0x1000],
        "bad/truncated_body.dmp": triage[:0x3000],
        "bad/garbage.bin": bytes((i * 7919 + 13) % 251 for i in range(5000)),
        "bad/notes.txt": b"call the customer back on monday\n",
        "wer/Kernel_3b_abc/Report.wer": _wer_report(),
        "wer/Kernel_3b_abc/WER-1234.dmp": _with_bugcheck(triage, 0x3B),
        "dup/copy-of-sample": sample,
        "bundle.zip": _damaged_zip({"case/minidump/a.dmp": _with_bugcheck(triage, 0x50),
                                    "case/analyze.txt": (ROOT / "tests/data/text/case2_stack.txt").read_bytes()
                                    + b"\n",
                                    "case/again.dmp": sample,
                                    "case/broken.dmp": _with_bugcheck(triage, 0xA)}, "case/broken.dmp"),
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def _expect(path: Path) -> dict:
    a = dumpkit.analyze(str(path), offline=True)
    return {k: getattr(a, k) for k in ("bugcheck_code", "failure_bucket_id", "failure_id_hash", "module_name",
                                       "image_name", "confidence")} | {"culprit": a.culprit.module}


@pytest.fixture(scope="module")
def first_run(client, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    r = batch.run([corpus], out=out, scheduler=client, time_limit=60, memory_limit=MEM_LIMIT, progress=False)
    return r, out


def _rows(out) -> dict:
    return {r["path"]: r for r in batch.load(str(out)).to_pylist()}


def test_every_row(first_run, corpus, tmp_path):
    r, out = first_run
    rows = _rows(out)
    z = f"{corpus / 'bundle.zip'}!"
    sample_sha = hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    # the sample's content is there three times (file, copy, zip member): one row, two duplicates
    sample_rows = [p for p, row in rows.items() if row["sha256"] == sample_sha]
    assert len(sample_rows) == 1 and sample_rows[0] in (str(corpus / "case2_lwfmgr.dmp"),
                                                       str(corpus / "dup/copy-of-sample"), z + "case/again.dmp")
    assert r.duplicates == 2 and r.skipped == 0 and r.ignored == 1          # Report.wer folded into its dump
    want = {str(corpus / p) for p in ("bc/d1.dmp", "bc/1e.dmp", "bc/2_pasted.log", "text/mail.txt",
                                      "bad/truncated_header.dmp", "bad/truncated_body.dmp", "bad/garbage.bin",
                                      "bad/notes.txt", "wer/Kernel_3b_abc/WER-1234.dmp")}
    want |= {z + m for m in ("case/minidump/a.dmp", "case/analyze.txt", "case/broken.dmp")}
    want.add(sample_rows[0])
    assert set(rows) == want
    assert r.analysed == len(want) and sum(r.by_status.values()) == len(want)

    # every row carries the sha256 of its content
    for p, row in rows.items():
        if "!" not in p:
            assert row["sha256"] == hashlib.sha256(Path(p).read_bytes()).hexdigest(), p
        assert row["seconds"] is not None and row["seconds"] >= 0

    # dumps and text: the same verdict as the public API gives for the file alone
    analysable = {str(corpus / p): corpus / p for p in ("bc/d1.dmp", "bc/1e.dmp", "bc/2_pasted.log",
                                                        "text/mail.txt", "wer/Kernel_3b_abc/WER-1234.dmp")}
    analysable[sample_rows[0]] = SAMPLE
    with zipfile.ZipFile(corpus / "bundle.zip") as zf:
        for m in ("case/minidump/a.dmp", "case/analyze.txt"):
            (tmp_path / Path(m).name).write_bytes(zf.read(m))
            analysable[z + m] = tmp_path / Path(m).name
    for p, src in analysable.items():
        row, exp = rows[p], _expect(src)
        for k, v in exp.items():
            assert row[k] == v, (p, k, row[k], v)
        assert row["status"] in ("ok", "incomplete"), p

    # the bug checks written into the headers
    codes = {"bc/d1.dmp": 0xD1, "bc/1e.dmp": 0x1E, "wer/Kernel_3b_abc/WER-1234.dmp": 0x3B}
    for p, code in codes.items():
        assert rows[str(corpus / p)]["bugcheck_code"] == code
        assert rows[str(corpus / p)]["status"] == "ok"
    assert rows[z + "case/minidump/a.dmp"]["bugcheck_code"] == 0x50
    sample_row = rows[sample_rows[0]]
    assert sample_row["status"] == "ok" and sample_row["bugcheck_code"] == 0x7E
    assert sample_row["culprit"] == "lwfmgr.sys" and sample_row["os_build"]
    assert sample_row["crash_time"] is not None and sample_row["culprit_timestamp"]
    assert rows[str(corpus / "bc/2_pasted.log")]["kind"] == "text"
    assert rows[str(corpus / "bc/2_pasted.log")]["source"] == "text"

    # WER fields kept from Report.wer
    w = rows[str(corpus / "wer/Kernel_3b_abc/WER-1234.dmp")]
    assert (w["wer_event_type"], w["wer_bucket"], w["wer_app"], w["wer_report_id"]) == \
        ("BlueScreen", "0x3b_c0000005_ndis!ndisTestBucket", "Windows", "5d1c0ffe-0000-4e11-9abc-0123456789ab")
    assert "BCCode=3b" in w["wer_signature"]

    # the bad ones
    bad = rows[str(corpus / "bad/truncated_header.dmp")]
    assert (bad["status"], bad["error_type"]) == ("error", "TruncatedDumpError")
    body = rows[str(corpus / "bad/truncated_body.dmp")]
    assert body["status"] == "incomplete" and "reader warned" in body["incomplete_reasons"]
    for p in ("bad/garbage.bin", "bad/notes.txt"):
        assert (rows[str(corpus / p)]["status"], rows[str(corpus / p)]["error_type"]) == ("error", "NotRecognised")
    broken = rows[z + "case/broken.dmp"]
    assert "damaged zip member" in broken["input_problem"] and broken["status"] in ("incomplete", "error")


def test_resume_skips_everything(first_run, client, corpus):
    r1, out = first_run
    before = _rows(out)
    r2 = batch.run([corpus], out=out, scheduler=client, time_limit=60, memory_limit=MEM_LIMIT, progress=False)
    assert r2.analysed == 0 and r2.skipped == r1.analysed and r2.duplicates == r1.duplicates
    assert _rows(out) == before
    assert not list((Path(out) / "parts").glob("*.parquet"))          # compacted
    assert not (Path(out) / "spool").exists()


def test_killed_run_keeps_finished_rows(tmp_path):
    from dumpkit.batch.store import PartWriter, done_shas
    w = PartWriter(str(tmp_path), every=2)
    for i in range(5):
        w.add({"path": f"/x/{i}.dmp", "sha256": f"{i:064x}", "status": "ok", "bugcheck_code": 0x7E})
    # no close(): the process 'dies' here; 4 rows are in two part files, 1 was still buffered
    assert len(list((tmp_path / "parts").glob("*.parquet"))) == 2
    assert done_shas(str(tmp_path)) == {f"{i:064x}" for i in range(4)}
    assert batch.load(str(tmp_path)).num_rows == 4


def test_buckets_cli_text_json_and_html(first_run, capsys, tmp_path):
    from dumpkit.cli import main
    _r, out = first_run
    html_path = tmp_path / "b.html"
    assert main(["buckets", str(out), "--json", "--html", str(html_path)]) == 0
    s = json.loads(capsys.readouterr().out)
    rows = batch.load(str(out)).to_pylist()
    with_bucket = [x for x in rows if x["failure_bucket_id"]]
    assert sum(b["count"] for b in s["buckets"]) == len(with_bucket)
    top = {b["failure_bucket_id"]: b for b in s["buckets"]}
    lwf = top[next(x["failure_bucket_id"] for x in rows if x["culprit"] == "lwfmgr.sys")]
    assert lwf["culprit"] == "lwfmgr.sys" and lwf["vendor"] and lwf["example"]
    assert s["by_status"]["error"] == sum(1 for x in rows if x["status"] == "error")
    assert any(c["culprit"] == "lwfmgr.sys" for c in s["culprits"])
    assert s["wer"] and s["wer"][0]["bucket"] == "0x3b_c0000005_ndis!ndisTestBucket"
    assert main(["buckets", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Buckets by count" in text and "lwfmgr.sys" in text and "By OS build" in text
    page = html_path.read_text(encoding="utf-8")
    assert "<svg" in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "<script" not in page and "https://" not in page


def test_html_page_draws_in_headless_chromium(first_run, tmp_path):
    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if not chromium:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    from ._png import read_png
    _r, out = first_run
    page = tmp_path / "buckets.html"
    page.write_text(batch.render_html(batch.summarize(str(out))), encoding="utf-8")
    shot = tmp_path / "shot.png"
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                               "--no-first-run", "--disable-background-networking", "--disable-component-update",
                               "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars",
                               "--window-size=800,600", f"--screenshot={shot}", page.as_uri()],
                              capture_output=True, timeout=90)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert shot.exists(), proc.stderr.decode(errors="replace")[-2000:]
    img = read_png(shot.read_bytes())
    assert img.shape[:2] == (600, 800)
    rgb = img[..., :3].reshape(-1, 3)
    # the first bucket bar is drawn in the palette's first colour (#2f6fde)
    bar = ((abs(rgb[:, 0].astype(int) - 0x2F) < 8) & (abs(rgb[:, 1].astype(int) - 0x6F) < 8)
           & (abs(rgb[:, 2].astype(int) - 0xDE) < 8)).sum()
    assert bar > 500, "no bucket bar in the screenshot"
    assert (rgb.min(axis=1) < 100).sum() > 1000, "no text in the screenshot"


def test_batch_cli_json(client, corpus, tmp_path, capsys):
    from dumpkit.cli import main
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(corpus / "bc" / "d1.dmp", src / "one.dmp")
    (src / "junk").write_bytes(b"\x00\x01\x02" * 100)
    addr = client.scheduler.address
    assert main(["batch", str(src), "--out", str(tmp_path / "o"), "--scheduler", addr, "--json",
                 "--memory-limit", str(MEM_LIMIT >> 20)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["analysed"] == 2 and doc["by_status"]["ok"] == 1 and doc["by_status"]["error"] == 1
    assert main(["batch", str(src), "--out", str(tmp_path / "o"), "--scheduler", addr,
                 "--memory-limit", str(MEM_LIMIT >> 20)]) == 0
    text = capsys.readouterr().out
    assert "skipped 2 already in the results" in text


# ------------------------------------------------------------------ no cluster needed
def test_recognised_by_content(tmp_path):
    assert recognise(SAMPLE.read_bytes()[:65536])[0] == "dump"
    assert recognise(b"PK\x03\x04" + bytes(100))[0] == "zip"
    assert recognise(_wer_report())[0] == "wer"
    assert recognise((ROOT / "tests/data/text/case2_stack.txt").read_bytes())[0] == "text"
    assert recognise((ROOT / "tests/data/logs/case2_setupapi.dev.log").read_bytes()[:65536])[0] == "log"
    assert recognise(b"hello world\n")[0] == "unknown"
    assert recognise(bytes(range(256)) * 10)[0] == "unknown"
    wer = parse_wer_report(_wer_report().decode("utf-16"))
    assert wer["wer_bucket"] == "0x3b_c0000005_ndis!ndisTestBucket" and wer["wer_app"] == "Windows"


def test_a_dump_given_alone_keeps_its_wer_report(tmp_path):
    from dumpkit.batch.inputs import StatCache, Walker
    (tmp_path / "Report.wer").write_bytes(_wer_report())
    (tmp_path / "x.dmp").write_bytes(SAMPLE.read_bytes())
    got = list(Walker(str(tmp_path / "spool"), StatCache(None)).walk([str(tmp_path / "x.dmp")]))
    assert len(got) == 1 and got[0].wer["wer_bucket"] == "0x3b_c0000005_ndis!ndisTestBucket"


def test_zip_reader_salvages_a_cut_archive():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a/one.dmp", SAMPLE.read_bytes())
        z.writestr("a/two.txt", b"x" * 1000)
    whole = buf.getvalue()
    cut = whole[:whole.index(b"PK\x01\x02")]         # the central directory is gone
    with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as f:
        f.write(cut)
    try:
        with ZipReader(f.name) as zr:
            assert zr.salvaged and [m.name for m in zr.members] == ["a/one.dmp", "a/two.txt"]
            with zr.open(zr.members[0]) as s:
                assert s.read() == SAMPLE.read_bytes()
    finally:
        os.unlink(f.name)


def test_missing_extra_says_how_to_install(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(batch.BatchError) as ei:
        batch.require()
    assert "pip install 'dumpkit[batch]'" in str(ei.value.hint)
    from dumpkit.cli import main
    assert main(["buckets", "."]) == 2                   # one line with the install command, exit 2


def test_progress_on_a_terminal_only():
    from dumpkit.batch.engine import _Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    pipe, tty = io.StringIO(), Tty()
    for stream in (pipe, tty):
        p = _Progress(None, stream)
        p.update(5, 20, 5, 1, 0, force=True)
        p.close()
    assert pipe.getvalue() == ""
    line = tty.getvalue()
    assert "batch 5/20" in line and "/s" in line and "1 error" in line and "eta" in line


# the budgets last: they replace the analysis processes the other tests reuse
def test_hanging_and_memory_hungry_inputs_fail_alone(client, corpus, tmp_path):
    triage = TRIAGE.read_bytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "hang-me.dmp").write_bytes(_with_bugcheck(triage, 0xEF))
    (tmp_path / "in" / "fine.dmp").write_bytes(_with_bugcheck(triage, 0x133))
    (tmp_path / "in" / "hog-me.dmp").write_bytes(_with_bugcheck(triage, 0x9F))
    r = batch.run([tmp_path / "in"], out=tmp_path / "out", scheduler=client, time_limit=4,
                  memory_limit=MEM_LIMIT, progress=False)
    rows = {Path(x["path"]).name: x for x in batch.load(str(tmp_path / "out")).to_pylist()}
    assert (rows["hang-me.dmp"]["status"], rows["hang-me.dmp"]["error_type"]) == ("timeout", "TimeBudget")
    assert 4 <= rows["hang-me.dmp"]["seconds"] < 30
    assert rows["fine.dmp"]["status"] == "ok" and rows["fine.dmp"]["bugcheck_code"] == 0x133
    hog = rows["hog-me.dmp"]
    assert (hog["status"], hog["error_type"]) == ("error", "MemoryBudget")
    assert r.by_status == {"timeout": 1, "ok": 1, "error": 1}


@pytest.mark.slow
def test_done_when_real_dumps_through_the_cli(tmp_path):
    """Issue 13's check: the real dumps, the sample, a truncated copy and garbage through `dumpkit batch`
    on its own 2-worker LocalCluster; the second run skips all; `dumpkit buckets` prints their buckets.
    Truth: shared/data/real/dumps/*.expected.md (bug check codes, culprit module, build)."""
    import sys
    from .conftest import shared_path
    real = shared_path("dumps")
    src = tmp_path / "in"
    src.mkdir()
    for p in sorted(real.glob("*.dmp")):
        shutil.copy(p, src / p.name)
    shutil.copy(SAMPLE, src / SAMPLE.name)
    (src / "case2_truncated.dmp").write_bytes(SAMPLE.read_bytes()[:0x1000])
    (src / "garbage.bin").write_bytes(bytes((i * 31 + 7) % 256 for i in range(4096)))
    cmd = [sys.executable, "-m", "dumpkit", "batch", str(src), "--out", str(tmp_path / "out"), "--workers", "2",
           "--json"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    doc = json.loads(first.stdout)
    assert doc["analysed"] == 6 and doc["workers"] == 2
    rows = {Path(r["path"]).name: r for r in batch.load(str(tmp_path / "out")).to_pylist()}
    x64 = rows["triage_x64.dmp"]
    assert (x64["status"], x64["bugcheck_code"], x64["culprit"], x64["os_build"]) == \
        ("ok", 0x1000007E, "amdppm.sys", 19041)
    assert x64["culprit_timestamp"] == 0xC9C03000
    assert rows["triage_arm64.dmp"]["bugcheck_code"] == 0x1C8
    assert (rows["case2_lwfmgr.dmp"]["status"], rows["case2_lwfmgr.dmp"]["culprit"]) == ("ok", "lwfmgr.sys")
    assert rows["calc_usermode.dmp"]["error_type"] == "NotADumpError"
    assert rows["case2_truncated.dmp"]["error_type"] == "TruncatedDumpError"
    assert rows["garbage.bin"]["status"] == "error"
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0 and json.loads(second.stdout)["skipped"] == 6
    shown = subprocess.run([sys.executable, "-m", "dumpkit", "buckets", str(tmp_path / "out")],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "AV_amdppm!unknown_function" in shown.stdout
    assert "AV_lwfmgr!unknown_function" in shown.stdout


def test_text_input_row_takes_the_culprit_version_from_its_lmv_block(tmp_path):
    """The lmv 'File version' of the culprit reaches the row (from the analysis, parsed once)."""
    from dumpkit.batch.sandbox import analyse_job
    lmv = ("\n0: kd> lmv m lwfmgr\nstart             end                 module name\n"
           "fffff804`1c7d0000 fffff804`1c7e2000   lwfmgr     (deferred)\n"
           "    Image name: lwfmgr.sys\n    File version:     2.4.1.7\n    CompanyName:      Example Corp\n")
    p = tmp_path / "case2.txt"
    p.write_bytes((ROOT / "tests/data/text/case2_stack.txt").read_bytes() + lmv.encode())
    row = analyse_job({"path": str(p), "source": str(p), "kind": "text"})
    assert row["culprit"] == "lwfmgr.sys" and row["culprit_version"] == "2.4.1.7"


def test_symbol_timeout_bounds_each_input_against_a_silent_server(tmp_path, monkeypatch):
    """--symbol-timeout reaches the worker: a symbol server that accepts and never answers costs one input
    about the timeout (not the 10 s socket default per request), and the input still gets its row."""
    import time

    from dumpkit.batch.sandbox import _symbol_path, analyse_job
    from dumpkit.symbolize import SymbolPath

    from .test_symbols_hostile_server import HostileServer, _silent

    monkeypatch.delenv("DUMPKIT_OFFLINE", raising=False)
    assert _symbol_path({"symbol_path": "C:\\sym"}) == "C:\\sym"            # no limits: the text as given
    monkeypatch.setenv("_NT_SYMBOL_PATH", str(tmp_path / "envstore"))
    sp = _symbol_path({"symbol_path": None, "symbol_budget": 7.0})
    assert isinstance(sp, SymbolPath) and sp.text == str(tmp_path / "envstore") and sp.budget.seconds == 7.0
    srv = HostileServer(_silent)
    try:
        sample = ROOT / "fixtures" / "samples" / "case2_lwfmgr.dmp"
        job = {"path": str(sample), "source": str(sample), "kind": "dump",
               "symbol_path": f"srv*{tmp_path / 'cache'}*{srv.url}", "symbol_timeout": 0.5}
        t0 = time.monotonic()
        row = analyse_job(job)
        elapsed = time.monotonic() - t0
    finally:
        srv.close()
    assert srv.connections >= 1                      # the server was really asked, then given up on
    assert elapsed < 8.0, elapsed
    assert row["status"] in ("ok", "incomplete") and row["failure_bucket_id"]
