"""Followup-frame selection with triage.ini semantics.

:func:`select_followup` walks a stack from the top (frame 0 = the faulting context)
and picks the frame ``!analyze`` would report as SYMBOL_NAME/MODULE_NAME:

1. every frame gets an owner from the triage rules (``symbols/triage.toml``): the most
   specific ``module!function`` rule, else the default owner ``MachineOwner``;
2. ``ignore`` frames are skipped (bug-check and exception plumbing, trap handlers...);
3. owner strength is ``last_*`` < ``maybe_*`` < definite.  The walk stops at the first
   definite owner; otherwise the strongest (then topmost) ``maybe_``/``last_`` frame wins,
   so a definite owner lower on the stack beats a weaker one above it;
4. frames without a module (raw addresses, user-mode) are skipped;
5. if every frame was ignored, the topmost frame with a module is used (reason says so).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

from dumpkit.analysis.kb import KnowledgeBase, RuleMatch, TriageRules, normalize_module_name
from dumpkit.model import Frame

__all__ = ["SkippedFrame", "FollowupResult", "select_followup"]


@dataclass(frozen=True)
class SkippedFrame:
    """A frame passed over on the way to the followup, and why."""

    index: int
    call_site: str
    module: Optional[str]
    owner: Optional[str]         # the triage owner, None for frames without a module
    why: str

    def __repr__(self) -> str:
        return f"<Skipped {self.index:02x} {self.call_site}: {self.why}>"


@dataclass
class FollowupResult:
    """The followup frame and how it was chosen.

    ``index`` is the position in the given sequence (``frame.index`` is WinDbg's frame
    number).  ``module`` is the WinDbg module name, ``symbol`` the function or None
    (WinDbg then says ``unknown_function``), ``offset`` the offset from the function,
    or from the module base when there is no symbol.
    """

    index: Optional[int]
    frame: Optional[Frame]
    module: Optional[str]
    image_name: Optional[str]
    symbol: Optional[str]
    offset: Optional[int]
    owner: str
    strength: str                       # 'definite' | 'maybe' | 'last' | 'fallback' | 'none'
    reason: str
    skipped: List[SkippedFrame] = field(default_factory=list)
    victims: List[str] = field(default_factory=list)    # weaker-owned modules passed over above the followup
    likely_victim: bool = False         # the followup module is framework/OS code (e.g. ks) that was probably misused
    suspect_hint: str = ""              # where to look instead when likely_victim

    @property
    def function(self) -> str:
        """Function part of the bucket: the symbol or ``unknown_function``."""
        return self.symbol or "unknown_function"

    @property
    def symbol_name(self) -> str:
        """WinDbg's SYMBOL_NAME: ``module!function+off`` or ``module+off`` (lower-case hex, no 0x)."""
        if self.module is None:
            return "Unknown_Module"
        off = f"+{self.offset:x}" if self.offset else ""
        if self.symbol:
            return f"{self.module}!{self.symbol}{off}"
        return f"{self.module}{off}" if off else self.module

    @property
    def bucket_suffix(self) -> str:
        """``module!function`` as it ends FAILURE_BUCKET_ID."""
        if self.module is None:
            return "Unknown_Module"
        return f"{self.module}!{self.function}"

    def to_json(self) -> dict:
        return {
            "index": self.index, "frame": None if self.frame is None else self.frame.index,
            "module": self.module, "image_name": self.image_name, "symbol": self.symbol,
            "offset": None if self.offset is None else hex(self.offset), "symbol_name": self.symbol_name,
            "owner": self.owner, "strength": self.strength, "reason": self.reason,
            "skipped": [{"index": s.index, "call_site": s.call_site, "owner": s.owner, "why": s.why}
                        for s in self.skipped],
            "victims": list(self.victims), "likely_victim": self.likely_victim, "suspect_hint": self.suspect_hint,
        }

    def __repr__(self) -> str:
        return f"<FollowupResult {self.symbol_name} owner={self.owner} ({self.strength}): {self.reason}>"


def select_followup(frames: Sequence[Frame], rules: Optional[TriageRules] = None,
                    kb: Optional[KnowledgeBase] = None, *, skip_modules: Sequence[str] = (),
                    top_frame: bool = False) -> FollowupResult:
    """Pick the followup frame of ``frames`` (top of stack first).

    ``rules`` defaults to ``kb.rules``; ``kb`` defaults to :meth:`KnowledgeBase.load`.
    The module database is used to flag a followup on framework code (ks, ndis,
    Wdf01000, ...) as a likely victim and to say where to look instead.
    ``skip_modules`` (from the bug check's analyzer, e.g. ``hal`` for 0x5C) are never
    chosen; ``top_frame=True`` takes the topmost frame with a module (the stack of a
    waiting thread in a live dump: its wait *is* the finding).
    """
    if kb is None:
        kb = KnowledgeBase.load()
    if rules is None:
        rules = kb.rules
    skip = {normalize_module_name(m) for m in skip_modules}
    if top_frame:
        for i, f in enumerate(frames):
            if f.module and normalize_module_name(f.module) not in skip:
                m = rules.lookup(f.module, f.symbol)
                return _result(kb, frames, i, m, "definite", "the analyzer for this bug check takes the top frame "
                               "of the analysed thread", [], rules)

    best_i: Optional[int] = None
    best_rank = 0
    best_match: Optional[RuleMatch] = None
    notes: List[tuple] = []          # (i, frame, match or None, why) for frames above/at the decision point
    for i, f in enumerate(frames):
        if not f.module:
            notes.append((i, f, None, "no module (raw address or user-mode frame)"))
            continue
        m = rules.lookup(f.module, f.symbol)
        if skip and normalize_module_name(f.module) in skip:
            notes.append((i, f, m, "module skipped by this bug check's analyzer"))
            continue
        if m.strength == "ignore":
            why = f"owner 'ignore' ({_rule_text(m)})"
            notes.append((i, f, m, why))
            continue
        rank = _RANK[m.strength]
        notes.append((i, f, m, ""))
        if rank > best_rank:
            best_i, best_rank, best_match = i, rank, m
        if rank == _RANK["definite"]:
            break

    if best_i is None:
        # everything was ignored: fall back to the topmost frame that has a module
        for i, f, m, _ in notes:
            if f.module:
                return _result(kb, frames, i, m or rules.lookup(f.module, f.symbol), "fallback",
                               "every frame is owned by 'ignore' rules; using the topmost frame with a module",
                               notes, rules)
        return FollowupResult(None, None, None, None, None, None, rules.default_owner, "none",
                              "no frame can be attributed to a module", _skips(notes, None, rules))

    assert best_match is not None
    f = frames[best_i]
    if best_match.strength == "definite":
        src = "default owner" if best_match.rule is None else f"rule {best_match.rule.pattern}"
        reason = f"first frame with a definite owner ({best_match.owner}, {src})"
    else:
        reason = (f"no definite owner on the stack; strongest weak owner is {best_match.owner} "
                  f"({_rule_text(best_match)})")
    return _result(kb, frames, best_i, best_match, best_match.strength, reason, notes, rules)


_RANK = {"ignore": 0, "last": 1, "maybe": 2, "definite": 3}


def _rule_text(m: RuleMatch) -> str:
    if m.rule is None:
        return "default owner"
    why = f": {m.rule.why}" if m.rule.why else ""
    return f"rule {m.rule.pattern}={m.rule.owner}{why}"


def _skips(notes, chosen: Optional[int], rules: TriageRules) -> List[SkippedFrame]:
    out: List[SkippedFrame] = []
    for i, f, m, why in notes:
        if i == chosen:
            continue
        if chosen is not None and i > chosen and not why:
            # a weaker candidate below the chosen frame (only when the chosen one is weak too)
            why = f"weaker owner {m.owner} ({_rule_text(m)}) below the followup"
        elif not why:
            why = f"weaker owner {m.owner} ({_rule_text(m)}); a stronger owner lower on the stack wins"
        out.append(SkippedFrame(i, f.call_site, f.module, None if m is None else m.owner, why))
    return out


def _result(kb: KnowledgeBase, frames: Sequence[Frame], i: int, m: RuleMatch, strength: str, reason: str,
            notes, rules: TriageRules) -> FollowupResult:
    f = frames[i]
    skipped = _skips(notes, i, rules)
    victims: List[str] = []
    for s in skipped:
        if s.index < i and s.module and s.owner and s.owner.lower() != "ignore" and s.module not in victims \
                and s.module != f.module:
            victims.append(s.module)
    rec = kb.module(f.module or "") if f.module else None
    likely_victim = False
    hint = ""
    if rec is not None and rec.role == "victim":
        likely_victim = True
        hint = rec.blame_instead or "the caller of this OS/framework routine (it was probably handed bad input)"
        callers = [g.module for g in frames[i + 1:] if g.module and g.module != f.module]
        third = [c for c in callers if (kb.module(c) is None or kb.module(c).role != "victim")]  # type: ignore[union-attr]
        if third:
            hint += f"; nearest non-OS caller on the stack: {third[0]}"
        reason += f"; {f.module} is {rec.category} code ({rec.file}), usually a victim: look at {hint}"
    image = f.image_name or (rec.file if rec is not None and normalize_module_name(rec.file) ==
                             normalize_module_name(f.module or "") and f.module not in ("nt", "hal") else None)
    return FollowupResult(i, f, f.module, image, f.symbol, f.offset, m.owner, strength, reason, skipped,
                          victims, likely_victim, hint)
