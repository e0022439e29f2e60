"""FAILURE_BUCKET_ID and FAILURE_ID_HASH, formed the way WinDbg's ``!analyze`` forms them.

A bucket is ``<class><followup>``: the class depends on the bug check (and on the fault:
access violations and page faults are ``AV_``), the followup is ``module!function`` of
the followup frame, ``module!unknown_function`` when the module has no symbols.  Some
bug checks name the culprit by a parameter or by the hardware instead
(``0x116_IMAGE_nvlddmkm.sys``, ``MEMORY_CORRUPTION_ONE_BIT``).  The per-bug-check rules are
data: ``symbols/analyzers.toml``, applied by :mod:`dumpkit.analysis.analyzers`; this module
keeps the helpers and the historical function signatures.

FAILURE_ID_HASH is a GUID made from MD5 over the UTF-16LE text ``"km:" + bucket.lower()``
(``"um:"`` for user mode), the digest read as the GUID's little-endian byte form.
"""
from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any, Optional, Sequence, Tuple

from ..kernel.roles import roles_for
from .analyzers import Facts, base_code as _base_code, evaluate

__all__ = [
    "failure_id_hash", "bucket_class", "failure_bucket_id", "followup_text", "base_code", "is_access_violation_code",
    "is_exception_bugcheck",
    "FAST_FAIL_NAMES", "STATUS_ACCESS_VIOLATION", "bucket_safe", "memory_operand",
]

STATUS_ACCESS_VIOLATION = 0xC0000005

#: page-fault bug checks: always an access violation
PAGE_FAULT_CODES = {0xA, 0xD1, 0x50}

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

def failure_id_hash(bucket: str, user_mode: bool = False) -> str:
    """WinDbg's FAILURE_ID_HASH for a FAILURE_BUCKET_ID: ``{98a1e719-bb08-86f7-3821-f56b482ab48e}``."""
    pre = ("um:" if user_mode else "km:") + bucket.lower()
    digest = hashlib.md5(pre.encode("utf-16-le")).digest()
    return "{" + str(uuid.UUID(bytes_le=digest)) + "}"


def base_code(code: int) -> int:
    """0x1000007E -> 0x7E (the ``_M`` codes are the base code with bit 28 set)."""
    return _base_code(code)


def is_exception_bugcheck(code: Optional[int]) -> bool:
    """A bug check that reports an unhandled exception: P1 is the exception code and P2 the address that
    raised it (0x1E, 0x7E, 0x8E, 0x3B and their 0x1000xxxx twins), as ``symbols/bugchecks.json``'s
    parameter roles say."""
    if code is None:
        return False
    r = roles_for(code)
    return r.index("exception_code") == 1 and r.index("ip") == 2


def is_access_violation_code(code: Optional[int], parameters: Sequence[int] = (),
                             exception_code: Optional[int] = None) -> bool:
    """True when the bug check reports an access violation / page fault."""
    if code is None:
        return exception_code == STATUS_ACCESS_VIOLATION
    b = base_code(code)
    if b in PAGE_FAULT_CODES:
        return True
    if is_exception_bugcheck(b):
        exc = exception_code if exception_code is not None else (parameters[0] if parameters else None)
        return exc is not None and (exc & 0xFFFFFFFF) == STATUS_ACCESS_VIOLATION
    return False


#: characters a FAILURE_BUCKET_ID never carries: WinDbg writes '_' for them (SYMBOL_NAME keeps them):
#: '~CallbackScope' -> '_CallbackScope' (electron.exe destructor), '<lambda_69bd...>::operator' ->
#: '_lambda_69bd..._::operator' (a C++ lambda in a .pyd), 'C:\\Program Files (x86)\\...' -> 'C:_Program_Files_(x86)_...'
#: a comma stays (FunctorMessageHandler_bool,_lambda_at_..., InterfacePtrState_..._URLLoaderClient,1_::Swap) and a
#: '/' of a path in a lambda's name becomes '_' (_lambda_at_.._.._third_party_webrtc_pc_rtpsender.cc:109:22__), and
#: so does '&' (IConnectionPointImpl_CBthRadioManager,_IID_IMediaRadioManagerNotifySink,...)
_BUCKET_UNSAFE = str.maketrans({c: "_" for c in "~<>`' \\/&"})


def bucket_safe(text: str) -> str:
    """``text`` as it appears in a FAILURE_BUCKET_ID: ``~``, ``<``, ``>``, blanks, quotes, backslashes, slashes and
    ``&`` become ``_`` (commas stay)."""
    return text.translate(_BUCKET_UNSAFE)


_MEM_OPERAND_RE = re.compile(r"\[([^\[\]]{1,80})\]")
_OPERAND_TERM_RE = re.compile(r"[+-]?[^+-]+")
_REG_NAME_RE = re.compile(r"^(?:[re]?(?:ax|bx|cx|dx|si|di|sp|bp)|r(?:8|9|1[0-5])[dwb]?)$")


def memory_operand(text: Optional[str], registers: Any) -> Optional[Tuple[bool, bool]]:
    """The faulting instruction's memory operand, as the user-mode pointer class needs it:
    ``(null_register, displacement)`` -- whether a register used unscaled in ``[...]`` (the base, or an index
    with scale 1) holds 0, and whether the operand has a constant displacement.  None when the operand or a
    register value is unknown.  ``mov rdi,qword ptr [rcx+50h]`` with rcx = 0 -> ``(True, True)``."""
    if not text or registers is None:
        return None
    m = _MEM_OPERAND_RE.search(text)
    if not m or text[:m.start()].rstrip().endswith(":"):
        return None                 # no memory operand, or a segment-relative one (fs:[30h]: the TEB)
    null = disp = False
    for term in _OPERAND_TERM_RE.findall(m.group(1).replace(" ", "")):
        t = term.lstrip("+-").lower()
        if not t:
            continue
        if "*" in t:
            reg, _, scale = t.partition("*")
            if not _REG_NAME_RE.match(reg):
                return None
            if scale != "1":
                continue            # a scaled index is an offset, never the pointer
            t = reg
        if _REG_NAME_RE.match(t):
            try:
                v = registers.get(t)
            except Exception:  # a context that cannot answer: the operand is unknown
                return None
            if v is None:
                return None
            null = null or int(v) == 0
        elif re.fullmatch(r"(?:0x)?[0-9a-f]{1,16}h?", t):
            disp = disp or int(t.rstrip("h").replace("0x", "") or "0", 16) != 0
        else:
            return None             # a segment prefix or a symbol: not a plain base+index+displacement
    return null, disp


def followup_text(module: Optional[str], symbol: Optional[str]) -> str:
    """``module!function`` / ``module!unknown_function``; '' when there is no followup module."""
    if not module:
        return ""
    fn = symbol
    if fn and "+" in fn:
        head, _, tail = fn.rpartition("+")
        if head and all(c in "0123456789abcdefABCDEFx" for c in tail):
            fn = head
    return bucket_safe(f"{module}!{fn or 'unknown_function'}")


def _facts(code: Optional[int], parameters: Sequence[int], *, exception_code: Optional[int] = None,
           access: Optional[str] = None, fault_kind: Optional[str] = None, av_region: Optional[str] = None,
           frames: Sequence[Any] = (), process_name: Optional[str] = None, device_image: Optional[str] = None,
           fdo_module: Optional[str] = None, power_direction: Optional[str] = None, status: Optional[str] = None,
           kb: Any = None, followup: str = "", **extra: Any) -> Facts:
    p = list(parameters)
    b = base_code(code) if code is not None else None
    exc = exception_code
    if exc is None and is_exception_bugcheck(b) and p:
        exc = p[0] & 0xFFFFFFFF
    if access is None and b == 0x1E and len(p) > 2:
        access = "write" if p[2] == 1 else "execute" if p[2] == 8 else "read"
    return Facts(code=code, parameters=p, exception_code=exc, access=access, fault_kind=fault_kind,
                 region=av_region, frames=frames, process=process_name, status=status, device_image=device_image,
                 fdo=fdo_module, power=power_direction, kb=kb, followup=followup, **extra)


def bucket_class(code: Optional[int], parameters: Sequence[int] = (), **kw: Any) -> str:
    """The class part of the bucket, ending in ``_`` (``AV_``, ``0x139_1d_INVALID_BALANCED_TREE_``).

    ``access`` is 'read' / 'write' / 'execute' (used by 0x50 and 0x1E), ``fault_kind`` comes from
    :mod:`dumpkit.analysis.fault` (``paged_ip``/``null_ip``/``bad_ip`` give the
    ``AV_CODE_AV_*_IP_`` classes), ``av_region`` overrides 0x50's region qualifier.
    With no bug check (a pasted stack only) an access violation still gives ``AV_``;
    anything else gives ''.  The rules are the table in ``symbols/analyzers.toml``.
    """
    if code is None:
        return "AV_" if (kw.get("exception_code") == STATUS_ACCESS_VIOLATION or kw.get("fault_kind")) else ""
    return evaluate(_facts(code, parameters, **kw)).bucket_class


def failure_bucket_id(code: Optional[int], parameters: Sequence[int], module: Optional[str],
                      symbol: Optional[str], **kw: Any) -> str:
    """The full FAILURE_BUCKET_ID: the analyzer's template with :func:`followup_text` filled in.

    ``module`` is the followup frame's WinDbg module name (``lwfmgr``), ``symbol`` its
    function or None.  Without a followup module the class alone is returned, without
    its trailing underscore (``0x9F_3``), as WinDbg does.
    """
    tail = followup_text(module, symbol)
    if code is None:
        cls = bucket_class(None, parameters, **kw)
        if not tail:
            return cls.rstrip("_") or "UNKNOWN"
        return cls + tail
    return evaluate(_facts(code, parameters, followup=tail, **kw)).bucket
