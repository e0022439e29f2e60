"""The bucket summary of a batch folder: text, JSON and a self-contained HTML page.

Buckets are counted over the rows that have a FAILURE_BUCKET_ID (ok and incomplete
analyses); each input counts once (rows are unique by SHA-256).
"""
from __future__ import annotations

import datetime as _dt
import html
import os
from collections import Counter, defaultdict
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .rows import STATUSES

_COLS = ["path", "status", "bugcheck_code", "bugcheck_name", "failure_bucket_id", "failure_id_hash", "culprit",
         "vendor", "category", "culprit_timestamp", "culprit_version", "os_build", "error", "error_type",
         "wer_event_type", "wer_app", "wer_bucket", "crash_time"]


def _rows(source: Any) -> List[Dict[str, Any]]:
    if isinstance(source, (str, os.PathLike)):
        from .store import load
        t = load(os.fspath(source), _COLS)
    else:
        t = source
    if hasattr(t, "to_pylist"):
        return t.to_pylist()
    return list(t)


def _top(counter: Counter, n: Optional[int]) -> List[Tuple[Any, int]]:
    items = sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))
    return items if n is None else items[:n]


def _most(values: Sequence[Any]) -> Any:
    c = Counter(v for v in values if v)
    return c.most_common(1)[0][0] if c else None


def _hex(v: Optional[int]) -> Optional[str]:
    return None if v is None else f"0x{v:x}"


def summarize(source: Any, *, top: Optional[int] = None) -> Dict[str, Any]:
    """The summary of a batch folder (or a table of rows): buckets by count with their culprit,
    vendor and an example path; culprit modules; OS builds; culprit timestamps/versions;
    bug checks; errors; WER buckets."""
    rows = _rows(source)
    by_status = Counter(r.get("status") or "error" for r in rows)
    with_bucket = [r for r in rows if r.get("failure_bucket_id")]

    groups: Dict[str, List[Dict[str, Any]]] = defaultdict(list)
    for r in with_bucket:
        groups[r["failure_bucket_id"]].append(r)
    buckets = []
    for bid, rs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        buckets.append({"failure_bucket_id": bid, "count": len(rs),
                        "incomplete": sum(1 for r in rs if r.get("status") != "ok"),
                        "bugcheck_code": _hex(_most([r.get("bugcheck_code") for r in rs])),
                        "bugcheck_name": _most([r.get("bugcheck_name") for r in rs]),
                        "failure_id_hash": _most([r.get("failure_id_hash") for r in rs]),
                        "culprit": _most([r.get("culprit") for r in rs]),
                        "vendor": _most([r.get("vendor") for r in rs]),
                        "example": sorted(r["path"] for r in rs)[0]})
    if top is not None:
        buckets = buckets[:top]

    cg: Dict[str, List[Dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r.get("culprit"):
            cg[r["culprit"]].append(r)
    culprits = [{"culprit": c, "count": len(rs), "vendor": _most([r.get("vendor") for r in rs]),
                 "category": _most([r.get("category") for r in rs]),
                 "buckets": len({r.get("failure_bucket_id") for r in rs if r.get("failure_bucket_id")})}
                for c, rs in sorted(cg.items(), key=lambda kv: (-len(kv[1]), kv[0]))][:top]

    builds = [{"os_build": b, "count": n} for b, n in _top(Counter(r.get("os_build") for r in rows
                                                                   if r.get("status") in ("ok", "incomplete")
                                                                   and r.get("os_build")), top)]
    unknown_build = sum(1 for r in rows if r.get("status") in ("ok", "incomplete") and not r.get("os_build"))
    if unknown_build:
        builds.append({"os_build": None, "count": unknown_build})

    vc = Counter((r["culprit"], r.get("culprit_timestamp"), r.get("culprit_version")) for r in rows
                 if r.get("culprit"))
    versions = []
    for (c, ts, ver), n in _top(vc, top):
        date = None
        if ts:
            # since Windows 10 most binaries carry a hash, not a time, in TimeDateStamp (reproducible
            # builds): a date is shown only when the value can be one
            try:
                when = _dt.datetime.fromtimestamp(ts, _dt.timezone.utc)
                if _dt.datetime(1995, 1, 1, tzinfo=_dt.timezone.utc) <= when <= _dt.datetime.now(_dt.timezone.utc):
                    date = when.strftime("%Y-%m-%d")
            except (OverflowError, OSError, ValueError):
                date = None
        versions.append({"culprit": c, "timestamp": _hex(ts), "timestamp_date": date, "version": ver, "count": n})

    bc: "Counter[Tuple[Any, Any]]" = Counter((r.get("bugcheck_code"), r.get("bugcheck_name")) for r in rows
                                             if r.get("bugcheck_code") is not None)
    bugchecks = [{"code": _hex(k[0]), "name": k[1], "count": n} for k, n in _top(bc, top)]

    eg: Dict[str, List[Dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r.get("status") in ("error", "timeout"):
            eg[str(r.get("error_type") or r.get("status"))].append(r)
    errors = [{"error_type": k, "count": len(rs), "example": sorted(r["path"] for r in rs)[0],
               "error": sorted(rs, key=lambda r: r["path"])[0].get("error")}
              for k, rs in sorted(eg.items(), key=lambda kv: (-len(kv[1]), kv[0]))][:top]

    wc = Counter((r.get("wer_event_type"), r.get("wer_app"), r.get("wer_bucket")) for r in rows
                 if r.get("wer_event_type") or r.get("wer_bucket"))
    wer = [{"event_type": k[0], "app": k[1], "bucket": k[2], "count": n} for k, n in _top(wc, top)]

    return {"rows": len(rows), "by_status": {s: by_status.get(s, 0) for s in STATUSES},
            "buckets": buckets, "culprits": culprits, "os_builds": builds, "culprit_versions": versions,
            "bugchecks": bugchecks, "errors": errors, "wer": wer, "schema_version": _schema_version()}


def _schema_version() -> str:
    from ..schemas import SCHEMA_VERSION
    return SCHEMA_VERSION


# ------------------------------------------------------------------------------------ text
def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = (0,)) -> List[str]:
    cells = [[("" if v is None else str(v)) for v in r] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    widths = [min(w, 60) for w in widths]

    def fmt(vals: Sequence[str]) -> str:
        out = []
        for i, v in enumerate(vals):
            v = v if len(v) <= widths[i] else v[: widths[i] - 1] + "…"
            out.append(v.rjust(widths[i]) if i in right else v.ljust(widths[i]))
        return "  " + "  ".join(out).rstrip()

    return [fmt(list(headers))] + [fmt(c) for c in cells]


def render_text(summary: Dict[str, Any]) -> str:
    st = ", ".join(f"{n} {s}" for s, n in summary["by_status"].items() if n)
    lines = [f"{summary['rows']} input(s): {st or 'none'}", ""]
    if summary["buckets"]:
        lines.append("Buckets by count")
        lines += _table(["count", "incomplete", "bucket", "culprit", "vendor", "example"],
                        [(b["count"], b["incomplete"] or "", b["failure_bucket_id"], b["culprit"] or "-",
                          b["vendor"] or "-", b["example"]) for b in summary["buckets"]], right=(0, 1))
        lines.append("")
    if summary["culprits"]:
        lines.append("Culprit modules")
        lines += _table(["count", "culprit", "vendor", "category", "buckets"],
                        [(c["count"], c["culprit"], c["vendor"] or "-", c["category"] or "-", c["buckets"])
                         for c in summary["culprits"]], right=(0, 4))
        lines.append("")
    if summary["os_builds"]:
        lines.append("By OS build")
        lines += _table(["count", "build"], [(b["count"], b["os_build"] or "unknown") for b in summary["os_builds"]])
        lines.append("")
    if summary["culprit_versions"]:
        lines.append("By culprit timestamp / version")
        lines += _table(["count", "culprit", "timestamp", "date", "version"],
                        [(v["count"], v["culprit"], v["timestamp"] or "-", v["timestamp_date"] or "-",
                          v["version"] or "-") for v in summary["culprit_versions"]])
        lines.append("")
    if summary["wer"]:
        lines.append("WER reports")
        lines += _table(["count", "event", "app", "WER bucket"],
                        [(w["count"], w["event_type"] or "-", w["app"] or "-", w["bucket"] or "-")
                         for w in summary["wer"]])
        lines.append("")
    if summary["errors"]:
        lines.append("Errors")
        lines += _table(["count", "error", "example", "message"],
                        [(e["count"], e["error_type"], e["example"], e["error"] or "") for e in summary["errors"]])
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------------------ html
_CSS = """
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px;color:#1d2330;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d8dde6}
.muted{color:#5b6474}.status span{display:inline-block;margin:0 10px 6px 0;padding:3px 10px;border-radius:12px;
background:#eef1f6}.status .ok{background:#d7f0dd}.status .incomplete{background:#fbefc9}
.status .error{background:#f8d4d4}.status .timeout{background:#e7d9f6}.status .skipped{background:#e4e7ec}
table{border-collapse:collapse;margin:6px 0 4px}th,td{padding:3px 10px;text-align:left;border-bottom:1px solid #eceff4;
vertical-align:top}th{background:#f4f6fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font:12.5px ui-monospace,Menlo,Consolas,monospace}svg{display:block;margin:6px 0}
"""
_PALETTE = ("#2f6fde", "#e0672c", "#2a9d55", "#b0399d", "#c29a06", "#12839b", "#7b5cd6", "#c23b3b")


def _bars(items: Sequence[Tuple[str, int]], *, width: int = 760, color: str = _PALETTE[0]) -> str:
    """A horizontal bar chart as inline SVG."""
    if not items:
        return ""
    label_w, bar_h, gap = 300, 20, 6
    top = max(n for _l, n in items) or 1
    h = len(items) * (bar_h + gap) + gap
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" role="img">']
    for i, (label, n) in enumerate(items):
        y = gap + i * (bar_h + gap)
        w = max(2, int((width - label_w - 60) * n / top))
        short = label if len(label) <= 44 else label[:43] + "…"
        parts.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" font-size="12" '
                     f'font-family="monospace" fill="#1d2330">{html.escape(short)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" rx="3" '
                     f'fill="{_PALETTE[i % len(_PALETTE)] if color == "multi" else color}">'
                     f'<title>{html.escape(label)}: {n}</title></rect>')
        parts.append(f'<text x="{label_w + w + 6}" y="{y + 15}" font-size="12" fill="#1d2330">{n}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = (0,)) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>"]
    for r in rows:
        cells = []
        for i, v in enumerate(r):
            text = "" if v is None else html.escape(str(v))
            cells.append(f'<td class="n">{text}</td>' if i in numeric else f"<td><code>{text}</code></td>"
                         if i != 0 else f"<td>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def render_html(summary: Dict[str, Any], *, title: str = "dumpkit buckets") -> str:
    """A self-contained page (inline CSS and SVG, no script, nothing fetched) with the summary's charts."""
    from .. import __version__
    s = summary
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p class=\"muted\">{s['rows']} input(s), made by dumpkit {html.escape(__version__)} on "
             f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}</p>",
             "<div class=\"status\">" + "".join(f'<span class="{k}">{k} {n}</span>'
                                                for k, n in s["by_status"].items() if n) + "</div>"]
    if s["buckets"]:
        parts.append("<h2>Buckets by count</h2>")
        parts.append(_bars([(b["failure_bucket_id"], b["count"]) for b in s["buckets"][:25]], color="multi"))
        parts.append(_html_table(["count", "incomplete", "bucket", "bug check", "culprit", "vendor", "example"],
                                 [(b["count"], b["incomplete"] or "", b["failure_bucket_id"], b["bugcheck_code"],
                                   b["culprit"], b["vendor"], b["example"]) for b in s["buckets"]],
                                 numeric=(0, 1)))
    if s["culprits"]:
        parts.append("<h2>Culprit modules</h2>")
        parts.append(_bars([(c["culprit"], c["count"]) for c in s["culprits"][:25]], color=_PALETTE[1]))
        parts.append(_html_table(["count", "culprit", "vendor", "category", "buckets"],
                                 [(c["count"], c["culprit"], c["vendor"], c["category"], c["buckets"])
                                  for c in s["culprits"]], numeric=(0, 4)))
    if s["os_builds"]:
        parts.append("<h2>By OS build</h2>")
        parts.append(_bars([(str(b["os_build"] or "unknown"), b["count"]) for b in s["os_builds"][:25]],
                           color=_PALETTE[2]))
    if s["culprit_versions"]:
        parts.append("<h2>By culprit timestamp / version</h2>")
        parts.append(_bars([(f"{v['culprit']} {v['version'] or v['timestamp'] or '?'}", v["count"])
                            for v in s["culprit_versions"][:25]], color=_PALETTE[3]))
        parts.append(_html_table(["count", "culprit", "timestamp", "date", "version"],
                                 [(v["count"], v["culprit"], v["timestamp"], v["timestamp_date"], v["version"])
                                  for v in s["culprit_versions"]]))
    if s["bugchecks"]:
        parts.append("<h2>Bug checks</h2>")
        parts.append(_html_table(["count", "code", "name"], [(b["count"], b["code"], b["name"])
                                                              for b in s["bugchecks"]]))
    if s["wer"]:
        parts.append("<h2>WER reports</h2>")
        parts.append(_html_table(["count", "event", "app", "WER bucket"],
                                 [(w["count"], w["event_type"], w["app"], w["bucket"]) for w in s["wer"]]))
    if s["errors"]:
        parts.append("<h2>Errors</h2>")
        parts.append(_html_table(["count", "error", "example", "message"],
                                 [(e["count"], e["error_type"], e["example"], e["error"]) for e in s["errors"]]))
    parts.append("</body></html>\n")
    return "".join(parts)
