"""One-way layers: no dumpkit module imports one of a higher layer, at module level or inside a function.

The order is the README's (Layout): io -> formats -> memory -> target -> kernel -> pe / unwind /
symbolize -> analysis -> report -> the public API (Dump, analyze) -> cli and batch.  The
per-CPU packages (dumpkit/arch/<cpu>/) hold one module per role, and each role sits in the layer
it serves: contexts and trap frames below everything that decodes them, translation with memory,
the body opener with the target registry, kernel-state readers with the kernel, unwinders and
walk strategies with unwind, the fault decoder with the analysis.  Only the source is read (ast):
the test imports nothing.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "dumpkit"

#: (module-name prefix, layer); the longest matching prefix wins
LAYERS = {
    # base: no dumpkit imports above it
    "dumpkit.errors": 0, "dumpkit.model": 0, "dumpkit.kbpath": 0, "dumpkit.schemas": 0,
    "dumpkit.statusline": 0, "dumpkit.arch": 0, "dumpkit.arch._common": 0,
    "dumpkit.io": 1,
    "dumpkit.formats": 2, "dumpkit.text": 2, "dumpkit.logs": 2,
    "dumpkit.memory": 3,
    "dumpkit.target": 4,
    "dumpkit.kernel": 5,
    "dumpkit.pe": 6, "dumpkit.unwind": 6, "dumpkit.symbolize": 6,
    "dumpkit.analysis": 7,
    "dumpkit.report": 8,
    "dumpkit.dump": 9, "dumpkit.api": 9, "dumpkit.backends": 9, "dumpkit": 9,
    "dumpkit.cli": 10, "dumpkit.batch": 10, "dumpkit.__main__": 10,
}
#: per-CPU roles (dumpkit.arch.<cpu>.<role>); the package itself registers a descriptor (base layer)
ARCH_ROLES = {"": 0, "frames": 0, "context": 0, "paging": 3, "opener": 4, "modules": 5, "kstate": 5,
              "unwind": 6, "walk": 6, "walker": 6, "fpo": 6, "fault": 7}
#: known upward imports, each with its reason; keep this list short (and empty when possible)
ALLOWED = {
    ("dumpkit.analysis.engine", "dumpkit.report.text"): "Analysis.render_text() convenience method",
    ("dumpkit.analysis.engine", "dumpkit.report.summary"): "Analysis.summary() convenience method",
}


def layer_of(mod: str) -> int:
    parts = mod.split(".")
    if len(parts) >= 3 and parts[1] == "arch" and not parts[2].startswith("_"):
        role = parts[3] if len(parts) > 3 else ""
        assert role in ARCH_ROLES, f"{mod}: place the arch role {role!r} in ARCH_ROLES"
        return ARCH_ROLES[role]
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in LAYERS:
            return LAYERS[key]
    raise AssertionError(f"{mod}: no layer (add its package to LAYERS)")


def _module_name(p: Path, root: Path = ROOT) -> Tuple[str, bool]:
    parts = list(p.relative_to(root).with_suffix("").parts)
    is_pkg = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_pkg else parts), is_pkg


def imports(p: Path, root: Path = ROOT) -> Iterator[Tuple[str, int, bool]]:
    """(imported module, line, lazy) for every dumpkit import in ``p``, TYPE_CHECKING blocks left out."""
    mod, is_pkg = _module_name(p, root)
    tree = ast.parse(p.read_text(encoding="utf-8"))

    def visit(node: ast.AST, lazy: bool) -> Iterator[Tuple[str, int, bool]]:
        for ch in ast.iter_child_nodes(node):
            if isinstance(ch, ast.If) and "TYPE_CHECKING" in ast.unparse(ch.test):
                yield from (x for c in ch.orelse for x in visit(c, lazy))
                continue
            inner = lazy or isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(ch, ast.ImportFrom):
                if ch.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[:len(base) - (ch.level - 1)]
                    target = ".".join(base + ([ch.module] if ch.module else []))
                else:
                    target = ch.module or ""
                if target == "dumpkit" or target.startswith("dumpkit."):
                    # 'from . import x' / 'from dumpkit import batch' may name submodules
                    for a in ch.names:
                        sub = f"{target}.{a.name}"
                        yield (sub if (PKG.parent / (sub.replace(".", "/") + ".py")).exists()
                               or (PKG.parent / sub.replace(".", "/")).is_dir() else target), ch.lineno, lazy
            elif isinstance(ch, ast.Import):
                for a in ch.names:
                    if a.name == "dumpkit" or a.name.startswith("dumpkit."):
                        yield a.name, ch.lineno, lazy
            elif isinstance(ch, ast.Call) and ast.unparse(ch.func).endswith("import_module") and ch.args \
                    and isinstance(ch.args[0], ast.Constant) and str(ch.args[0].value).startswith("dumpkit"):
                yield str(ch.args[0].value), ch.lineno, True
            yield from visit(ch, inner)

    yield from visit(tree, False)


def upward_imports() -> List[str]:
    bad = []
    for p in sorted(PKG.rglob("*.py")):
        mod, _ = _module_name(p)
        mine = layer_of(mod)
        for target, line, lazy in imports(p):
            if (mod, target) in ALLOWED or target.startswith(mod + "."):
                continue
            theirs = layer_of(target)
            if theirs > mine:
                bad.append(f"{p.relative_to(ROOT)}:{line}: {mod} (layer {mine}) imports {target} "
                           f"(layer {theirs}){' inside a function' if lazy else ''}")
    return bad


def test_no_module_imports_a_higher_layer():
    assert upward_imports() == []


def test_allowed_exceptions_are_still_needed():
    """An allowed upward import that is gone must leave the list (so it only shrinks)."""
    seen = set()
    for p in sorted(PKG.rglob("*.py")):
        mod, _ = _module_name(p)
        seen |= {(mod, t) for t, _, _ in imports(p)}
    assert set(ALLOWED) <= seen, set(ALLOWED) - seen


def test_the_walk_sees_lazy_imports(tmp_path):
    """A function-level import from a higher layer is caught like a module-level one."""
    probe = tmp_path / "dumpkit" / "kernel" / "_probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("def f():\n    from ..analysis.kb import KnowledgeBase\n    return KnowledgeBase\n")
    assert list(imports(probe, tmp_path)) == [("dumpkit.analysis.kb", 2, True)]
    assert layer_of("dumpkit.analysis.kb") > layer_of("dumpkit.kernel._probe")
