"""A user's own knowledge base, merged over the shipped one.

An overlay is a folder holding a ``modules.toml``, a ``triage.toml`` and/or an ``analyzers.toml``
in the same format as ``symbols/`` (validated by the same loaders, so a mistake raises the same
:class:`~dumpkit.analysis.kb.KnowledgeBaseError` naming the file and the entry). Folders come
from ``DUMPKIT_KB_PATH`` (several separated by ``os.pathsep``, later ones win) and from the
command line's ``--kb DIR`` (which wins over the environment).

Merging: a user module record replaces the shipped record for every name it claims (its
``file`` and ``aliases``); a user triage rule replaces the shipped rule with the same
``match`` pattern, other user rules are added; ``default_owner`` is taken from the overlay
only when the overlay sets it; a user analyzer replaces the shipped one for every bug check code
it lists, a user ``[[override]]`` the shipped one with the same ``name``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = ["ENV_VAR", "overlay_dirs", "merge_modules", "merge_rules", "overlay_key"]

ENV_VAR = "DUMPKIT_KB_PATH"
OVERLAY_FILES = ("modules.toml", "triage.toml", "analyzers.toml")

#: folders added for this process by the command line's ``--kb DIR`` (applied after the environment's)
SESSION_DIRS: List[str] = []


def overlay_dirs(extra: Sequence[str] = ()) -> List[Path]:
    """The overlay folders in the order they apply: ``$DUMPKIT_KB_PATH`` entries, then ``extra``.
    A folder that does not exist, or holds none of the overlay files, is an error."""
    from .kb import KnowledgeBaseError
    raw = [p for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p.strip()]
    out: List[Path] = []
    for entry, origin in [(p, ENV_VAR) for p in raw] + [(p, "--kb") for p in [*SESSION_DIRS, *extra]]:
        d = Path(entry).expanduser()
        if not d.is_dir():
            raise KnowledgeBaseError(f"{origin}: {entry} is not a folder", path=entry,
                                     expected="a folder with modules.toml, triage.toml and/or analyzers.toml")
        if not any((d / f).is_file() for f in OVERLAY_FILES):
            raise KnowledgeBaseError(f"{origin}: {entry} holds none of {', '.join(OVERLAY_FILES)}", path=entry,
                                     expected="modules.toml, triage.toml and/or analyzers.toml in the format of "
                                              "symbols/")
        if d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def overlay_key(dirs: Sequence[Path]) -> Tuple[Tuple[str, float], ...]:
    """Identifies an overlay set and its file versions (for the KnowledgeBase cache)."""
    key: List[Tuple[str, float]] = []
    for d in dirs:
        for f in OVERLAY_FILES:
            p = d / f
            try:
                key.append((str(p.resolve()), p.stat().st_mtime))
            except OSError:
                continue
    return tuple(key)


def merge_modules(base: Mapping[str, object], user: Mapping[str, object]) -> Dict[str, object]:
    """``base`` with every name ``user`` claims pointing at the user's record."""
    out = dict(base)
    out.update(user)
    return out


def merge_rules(base: object, user: object, user_sets_default: bool) -> object:
    """Triage rules: the user's replace shipped rules with the same pattern; the rest are added."""
    from .kb import TriageRules
    mine = {(r.module, r.function): r for r in user}  # type: ignore[attr-defined]
    rules = [mine.pop((r.module, r.function), r) for r in base]  # type: ignore[attr-defined]
    rules += list(mine.values())
    default = user.default_owner if user_sets_default else base.default_owner  # type: ignore[attr-defined]
    return TriageRules(rules, default)


def user_sets_default_owner(path: Path) -> bool:
    from .kb import _read_toml
    return "default_owner" in _read_toml(path)


def load_overlays(modules: Mapping[str, object], rules: object, dirs: Sequence[Path]
                  ) -> Tuple[Dict[str, object], object, List[str]]:
    """Apply ``dirs`` in order; returns (modules, rules, the files applied).

    A folder's ``analyzers.toml`` is validated here too (so loading the knowledge base reports a
    mistake in it at once); :meth:`AnalyzerTable.load <dumpkit.analysis.analyzers.AnalyzerTable.load>`
    merges it over the shipped table."""
    from .kb import _load_modules, _load_rules
    applied: List[str] = []
    mods: Dict[str, object] = dict(modules)
    for d in dirs:
        mf, tf, af = d / "modules.toml", d / "triage.toml", d / "analyzers.toml"
        if mf.is_file():
            mods = merge_modules(mods, _load_modules(mf))
            applied.append(str(mf))
        if tf.is_file():
            rules = merge_rules(rules, _load_rules(tf), user_sets_default_owner(tf))
            applied.append(str(tf))
        if af.is_file():
            from .analyzers import AnalyzerTable
            AnalyzerTable._from_file(af)       # validated now (not cached: the file may change)
            applied.append(str(af))
    return mods, rules, applied


def describe(dirs: Optional[Sequence[Path]]) -> str:
    return ", ".join(str(d) for d in dirs or ()) or "none"
