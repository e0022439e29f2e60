"""FAILURE_BUCKET_ID classes and FAILURE_ID_HASH against values WinDbg printed.

Truth: the four real !analyze outputs in ../shared/data/real/analyze, the seed case 2 value
from the issue, and bucket/hash pairs quoted from public !analyze reports (cited inline).
"""
from __future__ import annotations

import re

import pytest

from .conftest import shared_path
from dumpkit.analysis.bucket import (base_code, bucket_class, failure_bucket_id, failure_id_hash,
                                     followup_text, is_access_violation_code)
from dumpkit.model import Frame

# (FAILURE_BUCKET_ID, FAILURE_ID_HASH) as WinDbg printed them in public reports
PUBLISHED = [
    ("AV_lwfmgr!unknown_function", "{98a1e719-bb08-86f7-3821-f56b482ab48e}"),            # issue 6 / seed case 2
    ("AV_R_(null)_win32kbase!WmsgpConnect", "{ece26be9-101a-e2cf-72a9-a92359219248}"),   # win32kbase PoC write-up
    ("AV_R_INVALID_WwanUsbMp!unknown_function", "{31e4d053-0758-e43a-06a7-55f69b072cb3}"),  # upgrade-troubleshooting doc
    ("AV_ndis!NdisQueueIoWorkItem", "{10686423-afa1-4852-ad1b-9324ac44ac96}"),          # same doc (FAILURE_ID_HASH_STRING)
    ("0x3B_C0000006_VRF_nt!HvpGetCellPaged", "{7a661e2f-534d-3e96-ba17-ba22422da673}"),  # WinDbg-Feedback#323
    ("AV_nt!KiAddThreadToPrcbQueue", "{c74074a9-9c03-f27a-ab5d-89f228e80821}"),          # openzfsonwindows#562
    ("AV_kbase!RequestXXXDetectedCreate", "{f120e0af-e30d-355c-1e47-cbea64654a6b}"),     # IRPMon#116
]


@pytest.mark.parametrize("bucket,expected", PUBLISHED)
def test_published_hashes(bucket, expected):
    assert failure_id_hash(bucket) == expected


def _pairs(text: str):
    b = re.search(r"^FAILURE_BUCKET_ID:\s+(\S+)", text, re.M).group(1)
    h = re.search(r"^FAILURE_ID_HASH:\s+(\S+)", text, re.M).group(1)
    return b, h


@pytest.mark.parametrize("name", ["01_0x7E_AV_EvilDriver_unknown_function.txt", "02_0xD1_AV_myfault_notmyfault.txt",
                                  "03_0x50_AV_W_null_Driver.txt", "04_0x139_INVALID_BALANCED_TREE.txt"])
def test_real_outputs_bucket_to_hash(name):
    b, h = _pairs(shared_path("analyze", name).read_text(encoding="utf-8"))
    assert failure_id_hash(b) == h


def test_user_mode_prefix_differs():
    assert failure_id_hash("AV_x!y", user_mode=True) != failure_id_hash("AV_x!y")


def test_av_classes_from_the_real_reports():
    # 0x7E c0000005 (report 01), 0xD1 read (report 02), 0x50 write (report 03), 0x139 P1=0x1d (report 04)
    assert failure_bucket_id(0x7E, [0xffffffffc0000005, 0, 0, 0], "EvilDriver", None) == "AV_EvilDriver!unknown_function"
    assert failure_bucket_id(0x1000007E, [0xffffffffc0000005, 0, 0, 0], "o2micro_sdhost", None) == \
        "AV_o2micro_sdhost!unknown_function"
    assert failure_bucket_id(0xD1, [0xffff8001acdc6010, 2, 0, 0xfffff805736312d0], "myfault", None) == \
        "AV_myfault!unknown_function"
    assert failure_bucket_id(0x50, [0xffffe5068d8a4000, 2, 0xfffff801197f1d1e, 0], "Driver", None, access="write") == \
        "AV_W_(null)_Driver!unknown_function"
    assert failure_bucket_id(0x50, [0xfffff78000001000, 0, 0, 2], "win32kbase", "WmsgpConnect", access="read") == \
        "AV_R_(null)_win32kbase!WmsgpConnect"
    assert failure_bucket_id(0x139, [0x1d, 0, 0, 0], "Driver", None) == \
        "0x139_1d_INVALID_BALANCED_TREE_Driver!unknown_function"
    assert failure_bucket_id(0xD1, [0, 2, 8, 0], "TestDriver", "AccessPageableMemory", fault_kind="paged_ip") == \
        "AV_CODE_AV_PAGED_IP_TestDriver!AccessPageableMemory"
    assert failure_bucket_id(0x3B, [0xc0000005, 0, 0, 0], "NETIO", "StreamInvokeCalloutAndNormalizeAction") == \
        "AV_NETIO!StreamInvokeCalloutAndNormalizeAction"


def test_other_classes_from_classify_md_table():
    assert failure_bucket_id(0x13A, [0x12, 0, 0, 0], "Driver", "CreateRandomFile") == "0x13a_12_Driver!CreateRandomFile"
    assert failure_bucket_id(0x19, [0x22, 0, 0, 0], "Driver", None) == "0x19_22_Driver!unknown_function"
    assert failure_bucket_id(0x1A, [0x41792, 0, 0, 0], "nt", "MiDeleteVirtualAddresses") == \
        "0x1a_41792_nt!MiDeleteVirtualAddresses"
    assert failure_bucket_id(0x133, [1, 0x1e00, 0x1e00, 0], "gwdrv", None) == "0x133_DPC_gwdrv!unknown_function"
    # the clock interrupt that noticed the timeout over ordinary code is still a DPC timeout (real 0x133 gwdrv
    # output: KiInterruptDispatchNoLockNoEtw on top, bucket 0x133_DPC_gwdrv!unknown_function) ...
    clock = [Frame(0, 0, 0, module="nt", symbol="KiInterruptDispatchNoLockNoEtw", offset=0x3e),
             Frame(1, 0, 0, module="nt", symbol="ExAllocatePoolWithTag", offset=0xa7)]
    assert failure_bucket_id(0x133, [0, 0, 0, 0], "gwdrv", None, frames=clock) == "0x133_DPC_gwdrv!unknown_function"
    # ... an ISR when, below it, the processor was inside another interrupt's dispatch
    isr = clock + [Frame(2, 0, 0, module="nvlddmkm", symbol=None, offset=0x10),
                   Frame(3, 0, 0, module="nt", symbol="KiInterruptDispatch", offset=0x10)]
    assert failure_bucket_id(0x133, [0, 0, 0, 0], "nvlddmkm", None, frames=isr) == "0x133_ISR_nvlddmkm!unknown_function"
    assert failure_bucket_id(0x9F, [4, 0, 0, 0], None, None, device_image="usbehci.sys") == "0x9F_4_IMAGE_usbehci.sys"
    assert failure_bucket_id(0x9F, [3, 0, 0, 0], "RtsPer", None, device_image="pci.sys", fdo_module="RtsPer") == \
        "0x9F_3_RtsPer_IMAGE_pci.sys"
    assert failure_bucket_id(0x9F, [3, 0, 0, 0], None, None) == "0x9F_3"
    assert failure_bucket_id(0x13C, [0, 0, 0, 0], "nt", "PspThreadDelete") == "0x13C_nt!PspThreadDelete"
    assert failure_bucket_id(0xE3, [0, 0, 0, 0], "TestDriver", "FileCreationThread") == \
        "0xE3_TestDriver!FileCreationThread"
    assert failure_bucket_id(0x3B, [0xc0000006, 0, 0, 0], "nt", "HvpGetCellPaged").startswith("0x3B_C0000006_")
    assert failure_bucket_id(0x4A, [0, 0, 0, 0], "nt", "KiSystemServiceExit", process_name="svchost.exe") == \
        "RAISED_IRQL_FAULT_svchost.exe_nt!KiSystemServiceExit"


def test_helpers():
    assert base_code(0x1000007E) == 0x7E and base_code(0x7E) == 0x7E and base_code(0x10000000) == 0x10000000
    assert followup_text("nt", "KiPageFault+0x42e") == "nt!KiPageFault"
    assert followup_text("lwfmgr", None) == "lwfmgr!unknown_function"
    assert followup_text(None, None) == ""
    assert is_access_violation_code(0x7E, [0xffffffffc0000005])
    assert not is_access_violation_code(0x7E, [0x80000003])
    assert bucket_class(None, exception_code=0xC0000005) == "AV_"
