"""The package's layers, read from its source (ast): imports go one way, and no module reads
another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ops_widgets"

# Pure modules decide; they import no I/O (no httpx, no sockets, no threads, no widgets).
PURE = {"_types", "_progress", "_schedule", "_exceptions", "_backends", "_text", "widgets._view", "widgets._snapshot",
        "widgets._table_view", "widgets._media"}
IO = {"httpx", "socket", "threading", "asyncio", "uvicorn", "anywidget", "ipywidgets", "IPython", "_transport",
      "_engine", "_loop", "_client", "_sync"}
# What each layer must not import (by module, relative to the package).
FORBIDDEN = {
    "_transport": {"_engine", "_frame", "_client", "_sync", "widgets"},
    "_engine": {"widgets", "_client", "_sync", "_transport", "_frame"},
    "_clock": {"_engine", "_transport", "_client", "_sync", "widgets"},
    "_loop": {"_engine", "_transport", "_client", "_sync", "widgets"},
}
HANDLES = ("_poller", "_async", "_hub")


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def imports(name: str, tree: ast.Module) -> list[tuple[str, list[str]]]:
    """(module imported, relative to the package when it is ours, names taken from it)."""
    package = name.split(".")[:-1] if not name.endswith("__init__") else name.split(".")
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            out.append((target, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


def test_no_module_imports_another_modules_private_names() -> None:
    offences = []
    found = modules()
    for name, tree in found.items():
        for target, names in imports(name, tree):
            # A private module of the package may be imported (`from . import _schedule`).
            private = [n for n in names if n.startswith("_") and not n.startswith("__")
                       and f"{target}.{n}".strip(".") not in found]
            if private and not target.startswith("__future__"):
                offences.append(f"{name}: from {target or '.'} import {', '.join(private)}")
    assert offences == []


def test_layers_import_one_way() -> None:
    offences = []
    for name, tree in modules().items():
        targets = {t.split(".")[0] if not t.startswith("widgets") else "widgets" for t, _ in imports(name, tree)}
        targets |= {t for t, _ in imports(name, tree)}
        for bad in FORBIDDEN.get(name, set()):
            if bad in targets:
                offences.append(f"{name} imports {bad}")
        if name in PURE:
            for t in targets:
                if t.split(".")[-1] in IO or t in IO:
                    offences.append(f"pure {name} imports {t}")
    assert offences == []


def test_no_module_reaches_into_handles_or_clients() -> None:
    """`._poller`, `._async`, `._hub` and `.hub.` only in the module that defines them."""
    defined = {"_poller": "_engine", "_async": {"_sync", "_engine"}, "_hub": None}
    offences = []
    for name, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                owner = defined.get(node.attr, "")
                if node.attr in HANDLES:
                    allowed = owner if isinstance(owner, set) else {owner}
                    if name not in allowed:
                        offences.append(f"{name}:{node.lineno} .{node.attr}")
                if node.attr == "hub":
                    offences.append(f"{name}:{node.lineno} .hub")
    assert offences == []


def test_the_rules_can_fail() -> None:
    """The readers above see what they look for (a test that cannot fail is a defect)."""
    tree = ast.parse("from .._engine import _Handle\nx = h._poller.hub.loop\n")
    assert imports("widgets._operation", tree)[0] == ("_engine", ["_Handle"])
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert {"_poller", "hub"} <= attrs
