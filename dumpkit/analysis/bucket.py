"""FAILURE_BUCKET_ID and FAILURE_ID_HASH, formed the way WinDbg's ``!analyze`` forms them.

A bucket is ``<class><followup>``: the class depends on the bug check (and on the fault:
access violations and page faults are ``AV_``), the followup is ``module!function`` of
the followup frame, ``module!unknown_function`` when the module has no symbols.

=====================================  ==================================================
bug check                              class
=====================================  ==================================================
0xA, 0xD1                              ``AV_`` (``AV_CODE_AV_PAGED_IP_`` / ``_NULL_IP_`` / ``_BAD_IP_``
                                       when the faulting address is the instruction itself)
0x50                                   ``AV_R_`` / ``AV_W_`` / ``AV_X_`` + region (``(null)`` unless known) + ``_``
0x7E 0x8E 0x1E 0x3B (+ ``_M``)         ``AV_`` when the exception is c0000005, else ``0x7E_<STATUS>_``
0x133                                  ``0x133_DPC_`` or ``0x133_ISR_``
0x9F                                   ``0x9F_<P1>_`` + ``<fdo>_IMAGE_<pdo image>`` when known
0x139                                  ``0x139_<P1>_<FAST_FAIL name>_``
0x13A 0x19 0x1A 0xC4                   ``0x13a_<P1>_`` ... (lower-case hex)
0x4A                                   ``RAISED_IRQL_FAULT_<process>_``
0xEF                                   ``0xEF_<process>_BUGCHECK_CRITICAL_PROCESS_``
anything else                          ``0x<CODE>_``
=====================================  ==================================================

FAILURE_ID_HASH is a GUID made from MD5 over the UTF-16LE text ``"km:" + bucket.lower()``
(``"um:"`` for user mode), the digest read as the GUID's little-endian byte form.
"""
from __future__ import annotations

import hashlib
import uuid
from typing import Any, Optional, Sequence

__all__ = [
    "failure_id_hash", "bucket_class", "failure_bucket_id", "followup_text", "base_code", "is_access_violation_code",
    "FAST_FAIL_NAMES", "STATUS_ACCESS_VIOLATION",
]

STATUS_ACCESS_VIOLATION = 0xC0000005

#: bug checks whose P1 is an exception code (the ``_M`` variants share the code's low bits)
EXCEPTION_CODES = {0x1E, 0x7E, 0x8E, 0x3B}
#: page-fault bug checks: always an access violation
PAGE_FAULT_CODES = {0xA, 0xD1, 0x50}
#: bug checks whose bucket carries P1 (lower-case class spelling, as WinDbg prints them)
P1_CODES = {0x19, 0x1A, 0x13A, 0xC4}

#: FAST_FAIL_* codes (winnt.h) -> the name used in 0x139 buckets (prefix dropped)
FAST_FAIL_NAMES = {
    0: "LEGACY_GS_VIOLATION", 1: "VTGUARD_CHECK_FAILURE", 2: "STACK_COOKIE_CHECK_FAILURE", 3: "CORRUPT_LIST_ENTRY",
    4: "INCORRECT_STACK", 5: "INVALID_ARG", 6: "GS_COOKIE_INIT", 7: "FATAL_APP_EXIT", 8: "RANGE_CHECK_FAILURE",
    9: "UNSAFE_REGISTRY_ACCESS", 10: "GUARD_ICALL_CHECK_FAILURE", 11: "GUARD_WRITE_CHECK_FAILURE",
    12: "INVALID_FIBER_SWITCH", 13: "INVALID_SET_OF_CONTEXT", 14: "INVALID_REFERENCE_COUNT",
    18: "INVALID_JUMP_BUFFER", 19: "MRDATA_MODIFIED", 20: "CERTIFICATION_FAILURE", 21: "INVALID_EXCEPTION_CHAIN",
    22: "CRYPTO_LIBRARY", 23: "INVALID_CALL_IN_DLL_CALLOUT", 24: "INVALID_IMAGE_BASE",
    25: "DLOAD_PROTECTION_FAILURE", 26: "UNSAFE_EXTENSION_CALL", 27: "DEPRECATED_SERVICE_INVOKED",
    28: "INVALID_BUFFER_ACCESS", 29: "INVALID_BALANCED_TREE", 30: "INVALID_NEXT_THREAD",
    31: "GUARD_ICALL_CHECK_SUPPRESSED", 32: "APCS_DISABLED", 33: "INVALID_IDLE_STATE",
    34: "MRDATA_PROTECTION_FAILURE", 35: "UNEXPECTED_HEAP_EXCEPTION", 36: "INVALID_LOCK_STATE",
    37: "GUARD_JUMPTABLE", 38: "INVALID_LONGJUMP_TARGET", 39: "INVALID_DISPATCH_CONTEXT", 40: "INVALID_THREAD",
    41: "INVALID_SYSCALL_NUMBER", 42: "INVALID_FILE_OPERATION", 43: "LPAC_ACCESS_DENIED", 44: "GUARD_SS_FAILURE",
    45: "LOADER_CONTINUITY_FAILURE", 46: "GUARD_EXPORT_SUPPRESSION_FAILURE", 47: "INVALID_CONTROL_STACK",
    48: "SET_CONTEXT_DENIED", 49: "INVALID_IAT", 50: "HEAP_METADATA_CORRUPTION",
    51: "PAYLOAD_RESTRICTION_VIOLATION", 52: "LOW_LABEL_ACCESS_DENIED", 53: "ENCLAVE_CALL_FAILURE",
    54: "UNHANDLED_LSS_EXCEPTON", 55: "ADMINLESS_ACCESS_DENIED", 56: "UNEXPECTED_CALL",
    57: "CONTROL_INVALID_RETURN_ADDRESS", 58: "UNEXPECTED_HOST_BEHAVIOR", 59: "FLAGS_CORRUPTION",
    60: "VEH_CORRUPTION", 61: "ETW_CORRUPTION", 62: "RIO_ABORT", 63: "INVALID_PFN",
    64: "GUARD_ICALL_CHECK_FAILURE_XFG", 65: "CAST_GUARD", 66: "HOST_VISIBILITY_CHANGE",
    67: "KERNEL_CET_SHADOW_STACK_ASSIST", 68: "PATCH_CALLBACK_FAILED", 69: "NTDLL_PATCH_FAILED",
    70: "INVALID_FLS_DATA",
}

_INTERRUPT_FRAMES = ("KiInterruptDispatch", "KiCallInterruptServiceRoutine", "KiInterruptSubDispatch",
                     "KiChainedDispatch", "KiInterruptMessageDispatch", "HalpInterrupt")


def failure_id_hash(bucket: str, user_mode: bool = False) -> str:
    """WinDbg's FAILURE_ID_HASH for a FAILURE_BUCKET_ID: ``{98a1e719-bb08-86f7-3821-f56b482ab48e}``."""
    pre = ("um:" if user_mode else "km:") + bucket.lower()
    digest = hashlib.md5(pre.encode("utf-16-le")).digest()
    return "{" + str(uuid.UUID(bytes_le=digest)) + "}"


def base_code(code: int) -> int:
    """0x1000007E -> 0x7E (the ``_M`` codes are the base code with bit 28 set)."""
    if code & 0xF0000000 == 0x10000000 and code & 0x0FFF0000 == 0 and code & 0xFFFF:
        return code & 0xFFFF
    return code


def is_access_violation_code(code: Optional[int], parameters: Sequence[int] = (),
                             exception_code: Optional[int] = None) -> bool:
    """True when the bug check reports an access violation / page fault."""
    if code is None:
        return exception_code == STATUS_ACCESS_VIOLATION
    b = base_code(code)
    if b in PAGE_FAULT_CODES:
        return True
    if b in EXCEPTION_CODES:
        exc = exception_code if exception_code is not None else (parameters[0] if parameters else None)
        return exc is not None and (exc & 0xFFFFFFFF) == STATUS_ACCESS_VIOLATION
    return False


def followup_text(module: Optional[str], symbol: Optional[str]) -> str:
    """``module!function`` / ``module!unknown_function``; '' when there is no followup module."""
    if not module:
        return ""
    fn = symbol
    if fn and "+" in fn:
        head, _, tail = fn.rpartition("+")
        if head and all(c in "0123456789abcdefABCDEFx" for c in tail):
            fn = head
    return f"{module}!{fn or 'unknown_function'}"


def _fast_fail_name(p1: int, kb: Any = None) -> Optional[str]:
    if kb is not None:
        try:
            sub = kb.subtype(0x139, p1)
            if sub is not None and getattr(sub, "name", None):
                return str(sub.name).replace("FAST_FAIL_", "")
        except Exception:  # the KB is optional here: fall back to the table
            pass
    return FAST_FAIL_NAMES.get(p1)


def bucket_class(code: Optional[int], parameters: Sequence[int] = (), *,
                 exception_code: Optional[int] = None, access: Optional[str] = None,
                 fault_kind: Optional[str] = None, av_region: Optional[str] = None,
                 frames: Sequence[Any] = (), process_name: Optional[str] = None,
                 device_image: Optional[str] = None, fdo_module: Optional[str] = None,
                 power_direction: Optional[str] = None, status: Optional[str] = None, kb: Any = None) -> str:
    """The class part of the bucket, ending in ``_`` (``AV_``, ``0x139_1d_INVALID_BALANCED_TREE_``).

    ``access`` is 'read' / 'write' / 'execute' (used by 0x50), ``fault_kind`` comes from
    :mod:`dumpkit.analysis.fault` (``paged_ip``/``null_ip``/``bad_ip`` give the
    ``AV_CODE_AV_*_IP_`` classes), ``av_region`` overrides 0x50's region qualifier.
    With no bug check (a pasted stack only) an access violation still gives ``AV_``;
    anything else gives ''.
    """
    p = list(parameters) + [0] * (4 - len(parameters)) if len(parameters) < 4 else list(parameters)
    if code is None:
        return "AV_" if (exception_code == STATUS_ACCESS_VIOLATION or fault_kind) else ""
    b = base_code(code)
    if b in PAGE_FAULT_CODES or (b in EXCEPTION_CODES and is_access_violation_code(code, p, exception_code)):
        if fault_kind in ("paged_ip", "null_ip", "bad_ip") and b in (0xA, 0xD1):
            return {"paged_ip": "AV_CODE_AV_PAGED_IP_", "null_ip": "AV_CODE_AV_NULL_IP_",
                    "bad_ip": "AV_CODE_AV_BAD_IP_"}[fault_kind]
        if b == 0x50:
            rw = {"read": "R", "write": "W", "execute": "X"}.get(access or "", "R")
            region = av_region if av_region else "(null)"
            return f"AV_{rw}_{region}_"
        return "AV_"
    if b in EXCEPTION_CODES:
        exc = exception_code if exception_code is not None else p[0]
        return f"0x{b:X}_{exc & 0xFFFFFFFF:X}_"
    if b == 0x133:
        isr = p[0] == 0 and any(any(k in (getattr(f, "symbol", None) or "") for k in _INTERRUPT_FRAMES)
                                for f in frames)
        return f"0x133_{'ISR' if isr else 'DPC'}_"
    if b == 0x9F:
        out = f"0x9F_{p[0]:x}_"
        if power_direction:
            out += f"POWER_{power_direction.upper()}_"
        if device_image:
            out += (f"{fdo_module}_" if fdo_module else "") + f"IMAGE_{device_image}_"
        return out
    if b == 0x139:
        name = _fast_fail_name(p[0], kb)
        return f"0x139_{p[0]:x}_" + (f"{name}_" if name else "")
    if b in P1_CODES:
        return f"0x{b:x}_{p[0]:x}_"
    if b == 0x4A:
        return "RAISED_IRQL_FAULT_" + (f"{process_name}_" if process_name else "")
    if b == 0xEF:
        return "0xEF_" + (f"{process_name}_" if process_name else "") + "BUGCHECK_CRITICAL_PROCESS_" + \
            (f"{status}_" if status else "")
    return f"0x{b:X}_"


def failure_bucket_id(code: Optional[int], parameters: Sequence[int], module: Optional[str],
                      symbol: Optional[str], **kw: Any) -> str:
    """The full FAILURE_BUCKET_ID: :func:`bucket_class` + :func:`followup_text`.

    ``module`` is the followup frame's WinDbg module name (``lwfmgr``), ``symbol`` its
    function or None.  Without a followup module the class alone is returned, without
    its trailing underscore (``0x9F_3``), as WinDbg does.
    """
    cls = bucket_class(code, parameters, **kw)
    tail = followup_text(module, symbol)
    if 0x9F == (base_code(code) if code is not None else None) and kw.get("device_image"):
        # the device-stack attribution replaces the followup
        return cls.rstrip("_")
    if not tail:
        return cls.rstrip("_") or "UNKNOWN"
    return cls + tail
