"""What the symbol search did, honestly: a server that could not be reached is not a server
that said "not found".  Built from the :class:`~dumpkit.symbolize.store.Attempt` records the
resolver keeps (``Resolver.report_json()``), so it costs nothing extra."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional

__all__ = ["ServerStatus", "server_status", "module_reason", "render_server_status", "OFFLINE_ADVICE"]

#: how to stop asking servers (printed whenever one was unreachable)
OFFLINE_ADVICE = ("to work offline, add --offline (or set DUMPKIT_OFFLINE=1): only local folders and the "
                  "symbol cache are used")

_NETWORK = re.compile(r"gaierror|Name or service not known|Temporary failure in name resolution|nodename|"
                      r"getaddrinfo|URLError|timed? ?out|Connection (?:refused|reset|aborted)|Network is unreachable|"
                      r"No route to host|ConnectionError|ssl|CERTIFICATE|HTTP 5\d\d|HTTP 429|slower than|"
                      r"circuit|unreachable|proxy", re.I)

#: a lookup skipped because the run's network budget (``--symbol-budget``) ran out: not a network fault
_BUDGET = re.compile(r"network budget of [\d.e+]+ s for this run")


@dataclass
class ServerStatus:
    """One symbol server over a whole run."""

    url: str
    found: int = 0
    not_found: int = 0
    unreachable: int = 0
    offline: int = 0
    other_errors: int = 0
    last_error: str = ""
    modules_unreachable: List[str] = field(default_factory=list)
    modules_over_budget: List[str] = field(default_factory=list)     #: not asked: the run's budget ran out
    budget_error: str = ""

    @property
    def state(self) -> str:
        """``unreachable`` (no answer at all), ``partly unreachable``, ``offline``, ``ok``."""
        answered = self.found + self.not_found
        if self.unreachable and not answered:
            return "unreachable"
        if self.unreachable:
            return "partly unreachable"
        if self.offline and not answered:
            return "offline"
        return "ok"

    def to_json(self) -> Dict[str, Any]:
        return {"url": self.url, "state": self.state, "found": self.found, "not_found": self.not_found,
                "unreachable": self.unreachable, "offline": self.offline, "errors": self.other_errors,
                "last_error": self.last_error or None}


_CAUSE = re.compile(r"((?:[A-Za-z]+(?:Error|error|Exception)|timeout|HTTP \d{3})\b:?[^;()]{0,120})")


def _short(detail: str) -> str:
    """The cause without the URLs: ``gaierror: [Errno -2] Name or service not known``."""
    m = _CAUSE.search(detail or "")
    return (m.group(1).strip() if m else (detail or "")[:160]).rstrip(" :")


def _is_network(detail: str) -> bool:
    return bool(_NETWORK.search(detail or ""))


def _attempts(entry: Any) -> Iterable[Dict[str, Any]]:
    if isinstance(entry, dict):
        return entry.get("attempts", [])
    return [a.to_json() for a in getattr(entry, "attempts", [])]


def _is_server(where: str) -> bool:
    return where.lower().startswith(("http://", "https://"))


def server_status(report: Iterable[Any]) -> List[ServerStatus]:
    """Per server URL: how many lookups were answered (found / not found), how many never got
    an answer (unreachable), how many were skipped because dumpkit is offline."""
    out: Dict[str, ServerStatus] = {}
    for entry in report:
        mod = entry.get("module") if isinstance(entry, dict) else getattr(getattr(entry, "module", None), "name", "")
        for a in _attempts(entry):
            where = str(a.get("where") or "")
            if not _is_server(where):
                continue
            st = out.setdefault(where, ServerStatus(where))
            res, detail = a.get("result"), str(a.get("detail") or "")
            if res == "request":
                continue
            if res == "found":
                st.found += 1
            elif res in ("missing", "cached-miss", "message"):
                st.not_found += 1
            elif res == "offline":
                st.offline += 1
            elif _BUDGET.search(detail):
                st.other_errors += 1
                m = _BUDGET.search(detail)
                st.budget_error = m.group(0) if m else detail[:120]
                if mod and mod not in st.modules_over_budget:
                    st.modules_over_budget.append(mod)
            elif _is_network(detail):
                st.unreachable += 1
                st.last_error = _short(detail)
                if mod and mod not in st.modules_unreachable:
                    st.modules_unreachable.append(mod)
            else:
                st.other_errors += 1
                st.last_error = detail[:300]
    return list(out.values())


def module_reason(entry: Dict[str, Any]) -> Optional[str]:
    """Why a module has no PDB, in words: ``server unreachable`` beats ``not found``."""
    if entry.get("pdb", {}).get("found"):
        return None
    atts = list(_attempts(entry))
    if any(_is_server(str(a.get("where"))) and a.get("result") == "error" and _BUDGET.search(str(a.get("detail")))
           for a in atts):
        return "network budget spent: the PDB was not looked up (--symbol-budget)"
    if any(_is_server(str(a.get("where"))) and a.get("result") not in ("request", "found", "missing", "cached-miss",
                                                                         "message", "offline")
           and _is_network(str(a.get("detail"))) for a in atts):
        return "symbol server unreachable: the PDB was not looked up"
    if any(a.get("result") == "offline" for a in atts):
        return "offline: servers were not asked"
    if atts:
        return "PDB not found on the symbol path"
    return None


def render_server_status(statuses: List[ServerStatus]) -> List[str]:
    """Lines for the text output (empty when every server answered)."""
    lines: List[str] = []
    for st in statuses:
        if st.state in ("unreachable", "partly unreachable"):
            n = len(st.modules_unreachable)
            lines.append(f"symbol server {st.url} is {st.state}: {st.last_error or 'no answer'}; "
                         f"{n} module{'s' if n != 1 else ''} could not be looked up there (this is not 'not found')")
    if lines:
        lines.append(OFFLINE_ADVICE)
    for st in statuses:
        if st.modules_over_budget:
            n = len(st.modules_over_budget)
            lines.append(f"symbol server {st.url}: {n} module{'s' if n != 1 else ''} not looked up there: the "
                         f"{st.budget_error} ran out (raise it with --symbol-budget SECONDS or "
                         "$DUMPKIT_SYMBOL_BUDGET)")
    return lines
