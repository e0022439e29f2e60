"""The per-bug-check analyzer table (symbols/analyzers.toml) against buckets WinDbg printed.

Truth: FAILURE_BUCKET_ID / FAILURE_ID_HASH pairs from public ``!analyze -v`` outputs (each cited
inline; the hash proves the bucket string was transcribed exactly), with the bug check arguments
those outputs showed.
"""
from __future__ import annotations

import pytest

from dumpkit.analysis.analyzers import AnalyzerTable, Facts, evaluate, render_template
from dumpkit.analysis.bucket import failure_bucket_id, failure_id_hash
from dumpkit.analysis.kb import KnowledgeBaseError
from dumpkit.model import Frame


def _bucket(code, params, followup="", **kw):
    return evaluate(Facts(code=code, parameters=params, followup=followup, **kw)).bucket


# (bucket, hash) printed by WinDbg; the facts below reproduce the bucket
PRINTED = {
    # DebugPrivilege/InsightEngineering, KERNEL_LOCK_ENTRY_LEAKED_ON_THREAD_TERMINATION (153), P3 = 1
    "0x153_KERNEL_LOCK_ENTRY_LEAKED_ON_THREAD_TERMINATION_LOCK_POINTER_NOT_NULL_nt!KeCleanupThreadState":
        "{c1f11abf-30b0-6f15-0afc-73c2b6a6a885}",
    # same collection, KERNEL_APC_PENDING_DURING_EXIT (20)
    "0x20_NULLAPC_KAPC_NEGATIVE_nt!PspExitThread": "{fcbbc787-b7cc-0ca4-c274-c788b86a9951}",
    # qemu-devel "unable to boot windows with 256 cpus", HAL_INITIALIZATION_FAILED (5c), P1 = 0x7000
    "0x5C_HAL_INTERRUPT_REMAPPING_SETUP_FAILURE_nt!InitBootProcessor": "{85a33624-5d0e-3044-bbaa-0bdba50d221b}",
    # PNP_DETECTED_FATAL_ERROR (ca) P1 = 0x13, Windows 11 24H2 (ge_release)
    "0xCA_13_nt!PiDmaGuardProcessPreStart": "{b367b2d8-0cc5-f3e0-e733-3787841dcdd2}",
    # WHEA_UNCORRECTABLE_ERROR (124) P1 = 0x10 (device driver error source), kernel-generated triage dump
    "0x124_16_GenuineIntel__UNKNOWN_IMAGE_GenuineIntel.sys": "{37af9407-4a3e-0b08-acdd-dadffdc34c3c}",
    # MEMORY_CORRUPTOR: ONE_BIT on a 0x1A (Windows 10 19041)
    "MEMORY_CORRUPTION_ONE_BIT": "{e3faf315-c3d0-81db-819a-6c43d23c63a7}",
    # LiveKernelReports EXRESOURCE_TIMEOUT_LIVEDUMP (1cc), Windows 10 18362
    "LKD_0x1cc_EXRESOURCE_TIMEOUT_OWNERTHREAD_nt!KiSwapContext": "{ba09c374-1e32-1908-d12a-b95209a3dc5b}",
    # LiveKernelReports VIDEO_TDR_TIMEOUT_DETECTED (117), Windows 10 10586
    "LKD_0x117_IMAGE_igdkmd64.sys": "{df5cc292-6e03-34f8-7849-e22c43f13df4}",
    # CRITICAL_PROCESS_DIED (ef), Windows 10 17134
    "0xEF_csrss.exe_BUGCHECK_CRITICAL_PROCESS_66897700_ntdll!NtTerminateProcess":
        "{1c1f0cbd-836a-f251-4b76-76293e344c02}",
}


@pytest.mark.parametrize("bucket,h", sorted(PRINTED.items()))
def test_printed_pairs_are_consistent(bucket, h):
    assert failure_id_hash(bucket) == h


def test_subtype_buckets():
    assert _bucket(0x153, [0xffffc78839108040, 0xffffc788391086e0, 1, 0xffffc7883a0f6f70],
                   "nt!KeCleanupThreadState") in PRINTED
    assert _bucket(0x20, [0, 0xffff, 0, 0], "nt!PspExitThread") in PRINTED   # APC-disable count -1
    assert _bucket(0x5C, [0x7000, 0x618, 0xffffffffc00000bb, 0], "nt!InitBootProcessor") in PRINTED
    assert _bucket(0xCA, [0x13, 0, 0, 0], "nt!PiDmaGuardProcessPreStart") in PRINTED
    assert _bucket(0x1E, [0xffffffffc0000005, 0, 0, 0x10], "nt!CmpCreateKeyBody", exception_code=0xc0000005,
                   access="read") == "0x1E_c0000005_R_nt!CmpCreateKeyBody"
    assert failure_bucket_id(0xEF, [0xffffd18c66891580, 0, 0, 0], "ntdll", "NtTerminateProcess",
                             process_name="csrss.exe", status="66897700") in PRINTED


def test_culprits_not_on_the_stack():
    v = evaluate(Facts(code=0x124, parameters=[0x10, 0, 0, 0], cpu_vendor="GenuineIntel",
                       followup="stornvme!ControllerReset"))
    assert v.bucket in PRINTED and (v.module, v.image) == ("GenuineIntel", "GenuineIntel.sys")
    v = evaluate(Facts(code=0x1A, parameters=[0x41792, 0, 0, 0], fields={"MEMORY_CORRUPTOR": "ONE_BIT"},
                       followup="nt!MiDeleteVa"))
    assert v.bucket in PRINTED and (v.module, v.image) == ("hardware", "memory_corruption")
    v = evaluate(Facts(code=0x117, parameters=[1, 0xfffff800a4c620f0, 0, 0],
                       param_module=("igdkmd64", "igdkmd64.sys"), followup="watchdog!WdDbgReportRecreate"))
    assert v.bucket in PRINTED and v.module == "igdkmd64"
    v = evaluate(Facts(code=0x116, parameters=[1, 2, 3, 4], param_module=("nvlddmkm", "nvlddmkm.sys")))
    assert v.bucket == "0x116_IMAGE_nvlddmkm.sys"          # 0x116_IMAGE_nvlddmkm.sys in several public reports
    v = evaluate(Facts(code=0x101, parameters=[8, 0, 0xfffff88001f3f180, 4], followup="cng!SHA256Transform",
                       followup_strength="definite"))
    assert (v.module, v.image) == ("Unknown_Module", "Unknown_Image")


def test_live_dump_codes_get_lkd():
    assert _bucket(0x1CC, [1, 2, 3, 4], "nt!KiSwapContext", livedump=True) in PRINTED
    assert AnalyzerTable.load().for_code(0x1CC, True).followup_from == "top"
    assert _bucket(0x193, [1, 2, 3, 4], "dxgkrnl!Foo", livedump=True) == "LKD_0x193_dxgkrnl!Foo"


def test_context_and_fault_instruction_per_code():
    t = AnalyzerTable.load()
    assert t.for_code(0x1000007E).context == "cxr_param" and t.for_code(0x7E).fault_instruction
    assert t.for_code(0xD1).context == "trap"
    assert not t.for_code(0x4A).fault_instruction and not t.for_code(0xEF).fault_instruction
    assert t.for_code(0x5C).followup_skip == ("hal",)


def test_isr_needs_a_nested_interrupt():
    clock = [Frame(0, 0, 0, module="nt", symbol="KiInterruptDispatchNoLockNoEtw")]
    assert _bucket(0x133, [0, 0, 0, 0], "gwdrv!unknown_function", frames=clock) == "0x133_DPC_gwdrv!unknown_function"


def test_template_optional_groups():
    assert render_template("0xEF_[{process}_]X_[{status}_]{followup}", {"process": "csrss.exe", "status": None,
                                                                     "followup": "a!b"}) == "0xEF_csrss.exe_X_a!b"
    assert render_template("M_{field:MEMORY_CORRUPTOR}", {}, {"MEMORY_CORRUPTOR": "LARGE  (x)"}) == "M_LARGE"


_CASE = 'schema = 1\n[[analyzer]]\ncodes = ["0x9F"]\n[[analyzer.case]]\nbucket = "x"\n'


@pytest.mark.parametrize("toml, message", [
    (_CASE + 'culprit = "astrology"\n', "culprit 'astrology'"),
    ("schema = 1\n[[analyzer]]\ncodes = []\n", "codes"),
    (_CASE + "why = 3\n", "'why' must be"),
    (_CASE + 'remediation = "do it"\n', "'remediation' must be"),
])
def test_bad_table_is_a_clear_error(tmp_path, toml, message):
    p = tmp_path / "analyzers.toml"
    p.write_text(toml)
    with pytest.raises(KnowledgeBaseError, match=message):
        AnalyzerTable.load(p, reload=True)


def test_cpu_vendor_from_the_kprcb(real_triage):
    # the real triage dump runs amdppm.sys (AMD's processor power driver): an AMD processor
    import dumpkit
    from dumpkit.analysis.dumpsource import cpu_vendor
    from dumpkit.analysis.engine import analyze_parts
    with dumpkit.open(real_triage) as d:
        assert cpu_vendor(d) == "AuthenticAMD"
    a = analyze_parts(0x124, [0, 0xffff9c0d98cc1028, 0, 0], [], cpu_vendor="AuthenticAMD")
    assert a.failure_bucket_id == "0x124_0_AuthenticAMD__UNKNOWN_IMAGE_AuthenticAMD.sys"
    assert (a.module_name, a.image_name) == ("AuthenticAMD", "AuthenticAMD.sys")
    assert a.culprit.category == "hardware" and any("!errrec" in r for r in a.remediation)


def test_whea_without_a_cpu_vendor_blames_no_frame():
    """Two real 0x124 outputs (tests/data/agreement) where WinDbg names the CPU vendor (GenuineIntel) and the
    pasted text does not: the stack (stornvme's controller reset, PSHED's bug-check call) is the path that
    reported the machine check, so dumpkit blames no frame and says it is a hardware error."""
    import json
    import sys
    from pathlib import Path

    import dumpkit
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _agreement as A

    for cid in ("124_whea_genuineintel_stornvme", "124_0_mce_genuineintel_stack_only"):
        case = json.loads((A.DATA / f"{cid}.json").read_text(encoding="utf-8"))
        assert case["expected"]["MODULE_NAME"] == "GenuineIntel"
        a = dumpkit.analyze(A.render(case))
        assert a.culprit.module is None and a.culprit.category == "hardware", (cid, a.culprit)
        assert "hardware error" in a.culprit.reason and any("WHEA" in r for r in a.remediation)


def test_fill_pattern_pointers():
    """One repeated byte is a fill pattern (41414141 in a real 32-bit Chrome read: tests/data/agreement); NULL and
    all-ones are not, nor is an ordinary address."""
    from dumpkit.analysis.analyzers import _fill_pattern, _pointer_class
    assert _fill_pattern(0x41414141) and _fill_pattern(0xC0C0C0C0) and _fill_pattern(0xABABABABABABABAB)
    assert not _fill_pattern(0xFFFFFFFF) and not _fill_pattern(0x41414142) and not _fill_pattern(0x0CFC1888)
    assert _pointer_class(0x41414141, "read") == "INVALID_POINTER_READ_FILL_PATTERN_41414141"
    assert _pointer_class(0x41414141, "execute") == "SOFTWARE_NX_FAULT"     # executing it: DEP, as WinDbg says
