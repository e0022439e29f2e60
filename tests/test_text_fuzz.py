"""Random and mutated text never raises anything but TextParseError, and parses in bounded time."""
from __future__ import annotations

import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dumpkit.analysis.engine import analyze_text
from dumpkit.errors import TextParseError
from dumpkit.text import parse_text

DATA = Path(__file__).parent / "data" / "text"
SEED = (DATA / "case2_stack.txt").read_text() + "\n" + (DATA / "case1_mail.txt").read_text() + """
BUGCHECK_CODE:  d1
BUGCHECK_P1: ffff8001acdc6010
TRAP_FRAME:  ffffc60b87e8ed40 -- (.trap 0xffffc60b87e8ed40)
rax=0000000001580702 rbx=0000000000000000 rcx=0000000000000000
rip=fffff805736312d0 rsp=ffffc60b87e8eed0 rbp=ffffc60b87e8f141
myfault+0x12d0:
fffff805`736312d0 8b03            mov     eax,dword ptr [rbx] ds:00000000`00000000=????????
start             end                 module name
fffff804`1c7d0000 fffff804`1c7e2000   lwfmgr     (deferred)
"""
ALPHABET = st.sampled_from(list("0123456789abcdef`:!+ \n\t()[]=?*#-_.,xrRKN") + ["ffff", "nt!", "Arg1: ", "TrapFrame @ ",
                                                                                "STACK_TEXT:", "\n00 ", "kd> "])


def _check(text: str) -> None:
    t0 = time.perf_counter()
    try:
        parse_text(text)
    except TextParseError:
        pass
    try:
        analyze_text(text)
    except TextParseError:
        pass
    assert time.perf_counter() - t0 < 2.0


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=2000))
def test_random_unicode(text):
    _check(text)


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ALPHABET, max_size=400).map("".join))
def test_windbg_flavoured_noise(text):
    _check(text)


@settings(max_examples=120, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_real_text(data):
    text = SEED
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 40)))
        repl = data.draw(st.text(max_size=12) | ALPHABET)
        text = text[:i] + repl + text[j:]
    _check(text)


def test_huge_input_is_bounded():
    big = ("ffffec01`df207530 fffff804`1c7d5167     ndis!NdisFDeregisterFilterDriver+0x47\n" * 20000
           + "x" * 100000 + "\n")
    t0 = time.perf_counter()
    pt = parse_text(big)
    assert time.perf_counter() - t0 < 10
    assert len(pt.frames) > 0
