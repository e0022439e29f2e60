"""Generate the API reference from dumpkit's docstrings, offline, at ``mkdocs build`` time.

Used two ways:

* as an mkdocs hook (``hooks: [docs/_hooks/apidoc.py]`` in mkdocs.yml): ``on_config`` fills
  the "API reference" nav entry, ``on_files`` adds one generated page per module;
* as a script: ``python docs/_hooks/apidoc.py OUTDIR`` writes the same pages to OUTDIR.

It imports dumpkit from the repository the config file lives in, documents each module's
public names (its ``__all__``, else the public names it defines), converts the reST
bits our docstrings use (````code````, ``:class:`X```, ``>>>`` examples) to Markdown, and
never needs the network or an extra package.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import os
import re
import sys
from typing import Any, Dict, List, Optional, Tuple

log = logging.getLogger("mkdocs.hooks.apidoc")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: (module, page title, required).  Optional modules are documented when they import.
MODULES: List[Tuple[str, str, bool]] = [
    ("dumpkit", "dumpkit (top level)", True),
    ("dumpkit.api", "dumpkit.analyze", False),
    ("dumpkit.dump", "dumpkit.dump: the Dump", True),
    ("dumpkit.model", "dumpkit.model: modules, contexts, frames", True),
    ("dumpkit.errors", "dumpkit.errors", True),
    ("dumpkit.formats.header", "dumpkit.formats.header", True),
    ("dumpkit.target", "dumpkit.target: the target model", False),
    ("dumpkit.arch", "dumpkit.arch: architectures", False),
    ("dumpkit.kernel.state", "dumpkit.kernel.state: the kernel view", False),
    ("dumpkit.symbolize", "dumpkit.symbolize: symbols", False),
    ("dumpkit.analysis.engine", "dumpkit.analysis: the verdict", False),
    ("dumpkit.analysis.kb", "dumpkit.analysis.kb: knowledge base", False),
    ("dumpkit.batch", "dumpkit.batch: fleet triage", False),
    ("dumpkit.report", "dumpkit.report: renderers", False),
    ("dumpkit.text", "dumpkit.text: WinDbg text input", False),
    ("dumpkit.logs", "dumpkit.logs: setup logs", False),
    ("dumpkit.cli", "dumpkit.cli", True),
]
NAV_TITLE = "API reference"
OUT_DIR = "api"


# ----------------------------------------------------------------------------- docstrings
_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|const):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def _inline(text: str) -> str:
    """reST inline markup -> Markdown; ``<``/``>`` outside code escaped so they are not read as HTML."""
    text = _ROLE.sub(lambda m: f"`{m.group(1)}`", text)
    text = _LITERAL.sub(lambda m: "`" + m.group(1).replace("`", "'") + "`", text)
    parts = re.split(r"(`[^`]*`)", text)
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "".join(parts)


def docstring_to_markdown(doc: Optional[str]) -> str:
    """A cleaned docstring as Markdown: prose, ``>>>`` sessions and ``::`` literal blocks fenced."""
    if not doc:
        return ""
    lines = inspect.cleandoc(doc).splitlines()
    out: List[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(">>>"):
            out.append("```pycon")
            while i < len(lines) and lines[i].strip():
                out.append(lines[i].strip() if lines[i].lstrip().startswith((">>>", "...")) else lines[i])
                i += 1
            out.append("```")
            continue
        if line.rstrip().endswith("::") and i + 1 < len(lines):
            lead = line.rstrip()[:-1].rstrip(":")
            out.append(_inline(lead + (":" if lead.strip() else "")))
            i += 1
            while i < len(lines) and not lines[i].strip():
                i += 1
            block: List[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            if block:
                out.append("")
                out.append("```")
                out.extend(inspect.cleandoc("\n".join(block)).splitlines())
                out.append("```")
                out.append("")
            continue
        out.append(_inline(line))
        i += 1
    return "\n".join(out).strip()


# ----------------------------------------------------------------------------- objects
def _ann(a: Any) -> str:
    return a if isinstance(a, str) else inspect.formatannotation(a)


def _default(v: Any) -> str:
    r = repr(v)
    return "..." if re.match(r"^<.* at 0x[0-9a-f]+>$", r) else r


def format_signature(sig: inspect.Signature, skip_first: bool = False) -> str:
    """``(a: int, *, b: str = 'x') -> bool`` with string annotations unquoted (postponed evaluation)
    and sentinel defaults shown as ``...``."""
    params = list(sig.parameters.values())[1 if skip_first else 0:]
    out: List[str] = []
    star_done = False
    for i, p in enumerate(params):
        if p.kind is p.KEYWORD_ONLY and not star_done:
            out.append("*")
            star_done = True
        text = p.name
        if p.kind is p.VAR_POSITIONAL:
            text, star_done = "*" + p.name, True
        elif p.kind is p.VAR_KEYWORD:
            text = "**" + p.name
        if p.annotation is not p.empty:
            text += f": {_ann(p.annotation)}"
        if p.default is not p.empty:
            text += (" = " if p.annotation is not p.empty else "=") + _default(p.default)
        out.append(text)
        if p.kind is p.POSITIONAL_ONLY and (i + 1 == len(params) or params[i + 1].kind is not p.POSITIONAL_ONLY):
            out.append("/")
    ret = "" if sig.return_annotation is sig.empty else f" -> {_ann(sig.return_annotation)}"
    return f"({', '.join(out)}){ret}"


def _signature(obj: Any, name: str, skip_first: bool = False) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return name
    return f"{name}{format_signature(sig, skip_first)}"


def public_names(mod: Any) -> List[str]:
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [n for n, v in vars(mod).items()
                 if not n.startswith("_") and getattr(v, "__module__", None) == mod.__name__
                 and (inspect.isclass(v) or inspect.isfunction(v))]
    return [n for n in names if not n.startswith("_") or n == "__version__"]


def _members(cls: type) -> List[Tuple[str, Any]]:
    """Public methods and properties defined on the class itself (not inherited), source order."""
    out = []
    for n, v in vars(cls).items():
        if n.startswith("_") and n not in ("__init__",):
            continue
        if n == "__init__":
            continue
        if isinstance(v, (staticmethod, classmethod)):
            out.append((n, v.__func__))
        elif isinstance(v, property) or inspect.isfunction(v):
            out.append((n, v))
    return out


def _class_markdown(name: str, cls: type, level: int = 2) -> List[str]:
    h = "#" * level
    out = [f"{h} class `{name}`", ""]
    init = cls.__init__ if "__init__" in vars(cls) else None
    if dataclasses.is_dataclass(cls):
        out += ["```python", _signature(cls, name), "```", ""]
    elif init is not None:
        try:
            sig = inspect.signature(init).replace(return_annotation=inspect.Signature.empty)
            out += ["```python", f"{name}{format_signature(sig, skip_first=True)}", "```", ""]
        except (TypeError, ValueError):
            pass
    bases = [b.__name__ for b in cls.__bases__ if b is not object]
    if bases:
        out += [f"Bases: {', '.join('`' + b + '`' for b in bases)}", ""]
    doc = docstring_to_markdown(cls.__doc__ if "__doc__" in vars(cls) else None)
    if doc:
        out += [doc, ""]
    if dataclasses.is_dataclass(cls):
        fields = dataclasses.fields(cls)
        if fields:
            out += ["| field | type | default |", "|---|---|---|"]
            for f in fields:
                if f.default is not dataclasses.MISSING:
                    default = repr(f.default)
                elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                    default = f"{getattr(f.default_factory, '__name__', 'factory')}()"
                else:
                    default = "required"
                typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
                out.append(f"| `{f.name}` | `{typ}` | `{default}` |".replace("|`", "| `"))
            out.append("")
    for mname, member in _members(cls):
        if isinstance(member, property):
            out += [f"{h}# `{name}.{mname}` (property)", ""]
            d = docstring_to_markdown(member.fget.__doc__ if member.fget else None)
        else:
            first = next(iter(inspect.signature(member).parameters), "") if callable(member) else ""
            out += [f"{h}# `{name}.{mname}`", "", "```python",
                    _signature(member, f"{name}.{mname}", skip_first=first in ("self", "cls")), "```", ""]
            d = docstring_to_markdown(member.__doc__)
        if d:
            out += [d, ""]
    return out


def module_markdown(modname: str, title: str) -> str:
    mod = importlib.import_module(modname)
    out = [f"# {title}", ""]
    doc = docstring_to_markdown(mod.__doc__)
    if doc:
        out += [doc, ""]
    documented = []
    for n in public_names(mod):
        obj = getattr(mod, n, None)
        if obj is None:
            continue
        home = getattr(obj, "__module__", modname) or modname
        if modname == "dumpkit" and home != "dumpkit" and (inspect.isclass(obj) or inspect.isfunction(obj)):
            documented.append((n, obj, home))          # the top-level page lists, module pages document
            continue
        if inspect.isclass(obj):
            out += _class_markdown(n, obj)
        elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
            out += [f"## `{n}`", "", "```python", _signature(obj, n), "```", ""]
            d = docstring_to_markdown(obj.__doc__)
            if d:
                out += [d, ""]
        elif isinstance(obj, (str, int, float, tuple)) and len(repr(obj)) < 200:
            out += [f"## `{n}`", "", f"`{n} = {obj!r}`", ""]
    if documented:
        out += ["## Exported names", "", "| name | defined in | summary |", "|---|---|---|"]
        pages = {m for m, _, _ in MODULES}
        for n, obj, home in documented:
            first = (inspect.getdoc(obj) or "").strip().splitlines()
            summary = _inline(first[0]) if first else ""
            target = next((p for p in _page_chain(home) if p in pages), None)
            where = f"[`{home}`]({_page_file(target)})" if target else f"`{home}`"
            out.append(f"| `dumpkit.{n}` | {where} | {summary.replace('|', '/')} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _page_chain(modname: str) -> List[str]:
    """``a.b.c`` -> [``a.b.c``, ``a.b``] (the module's page or its package's), never the top level."""
    parts = modname.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 1, -1)]


def _page_file(modname: str) -> str:
    return modname.replace("dumpkit.", "").replace(".", "-") + ".md" if modname != "dumpkit" else "dumpkit.md"


def generate() -> Dict[str, Tuple[str, str]]:
    """{relative path under docs/: (title, markdown)} for every module that imports."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    pages: Dict[str, Tuple[str, str]] = {}
    for modname, title, required in MODULES:
        try:
            md = module_markdown(modname, title)
        except ImportError as exc:
            if required:
                raise
            log.info("apidoc: %s not documented (%s)", modname, exc)
            continue
        pages[f"{OUT_DIR}/{_page_file(modname)}"] = (title, md)
    index = ["# API reference", "",
             "Generated from the docstrings when the site is built "
             "(`docs/_hooks/apidoc.py`), so it always matches the code.", ""]
    for path, (title, _) in pages.items():
        index.append(f"* [{title}]({path.split('/', 1)[1]})")
    pages[f"{OUT_DIR}/index.md"] = ("Overview", "\n".join(index) + "\n")
    return pages


# ----------------------------------------------------------------------------- mkdocs hook
_PAGES: Dict[str, Tuple[str, str]] = {}


def on_config(config, **kwargs):
    _PAGES.clear()
    _PAGES.update(generate())
    nav = config.get("nav") or []
    entries = [{title: path} for path, (title, _) in _PAGES.items()]
    entries.insert(0, entries.pop())                   # the overview first
    for i, item in enumerate(nav):
        if isinstance(item, dict) and NAV_TITLE in item:
            nav[i] = {NAV_TITLE: entries}
    return config


#: pages other people write; until one exists the site shows a placeholder (and says so in the log)
PENDING_PAGES = {
    "json-schema.md": "JSON output",
    "setup-logs.md": "Setup logs",
    "dump-formats.md": "Supported dump types",
    "symbols.md": "Symbols",
}


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File
    for path, (_, md) in _PAGES.items():
        existing = files.get_file_from_path(path)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, path, content=md))
    for path, title in PENDING_PAGES.items():
        if files.get_file_from_path(path) is None:
            log.info("apidoc: docs/%s is not written yet; a placeholder stands in", path)
            files.append(File.generated(config, path, content=f"# {title}\n\nThis page is being written.\n"))
    return files


if __name__ == "__main__":
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "site-api")
    for rel, (_, md) in generate().items():
        dest = os.path.join(outdir, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "w", encoding="utf-8") as f:
            f.write(md)
        print(dest)
