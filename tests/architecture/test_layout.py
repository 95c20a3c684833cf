"""The layout cannot rot unnoticed: who may import whom, no cycles, honest ``__all__``.

The import graph is read from the source (every ``import`` statement, at module level or
inside a function, ``TYPE_CHECKING`` blocks included), so a lazy import cannot hide an
edge. The one runtime check starts a fresh interpreter to see what importing the gate
room really loads.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO

PACKAGES = ("appliance", "gate_contract", "matching_service", "firmware_bridge", "testbed")
# The appliance's rooms, lowest first: a room imports only rooms below it (and the kernel).
APPLIANCE_LAYERS = (
    "vision",
    "custody",
    "gate",
    "matching",
    "pipeline",
    "screens",
    "service",
    "ops",
)
KERNEL = ("appliance.errors", "appliance.log_context", "appliance.paths", "appliance.shutdown")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


SOURCES = _sources()


def _imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports (absolute names; ``from x import y`` yields x.y if
    that is one of ours, else x)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                yield candidate if candidate in SOURCES else node.module


GRAPH = {name: sorted(set(_imports(path))) for name, path in SOURCES.items()}


def _top(module: str) -> str:
    return module.split(".")[0]


def _edges(from_package: str) -> Iterator[tuple[str, str]]:
    for module, targets in GRAPH.items():
        if _top(module) == from_package:
            for target in targets:
                yield module, target


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("appliance", {"matching_service", "testbed"}),
        ("matching_service", {"appliance", "testbed", "firmware_bridge"}),
        ("gate_contract", {"appliance", "matching_service", "testbed", "firmware_bridge"}),
        ("firmware_bridge", {"appliance", "matching_service", "testbed"}),
    ],
)
def test_packages_import_only_what_they_may(package: str, forbidden: set[str]) -> None:
    bad = [(m, t) for m, t in _edges(package) if _top(t) in forbidden]
    assert bad == [], f"{package} must not import {sorted(forbidden)}: {bad}"


def test_the_mcu_code_imports_only_the_protocol() -> None:
    """What runs on the microcontroller needs nothing of the host but the shared protocol."""
    ours = {m for m in SOURCES}
    bad = [
        (m, t)
        for m, t in _edges("firmware_bridge")
        if m.startswith("firmware_bridge.mcu")
        and t in ours | {"firmware_bridge"}
        and not (t == "firmware_bridge.protocol" or t.startswith("firmware_bridge.mcu"))
    ]
    assert bad == []


def _layer(module: str) -> int | None:
    if module in KERNEL or module == "appliance":
        return -1
    parts = module.split(".")
    if parts[0] != "appliance" or len(parts) < 2 or parts[1] not in APPLIANCE_LAYERS:
        return None
    return APPLIANCE_LAYERS.index(parts[1])


def test_appliance_rooms_import_only_rooms_below_them() -> None:
    bad = []
    for module, target in _edges("appliance"):
        source, dest = _layer(module), _layer(target)
        if source is None or dest is None or _top(target) != "appliance":
            continue
        if dest > source:
            bad.append(f"{module} -> {target}")
    assert bad == [], "an import flows up the pipeline:\n" + "\n".join(bad)


def test_the_kernel_imports_no_room() -> None:
    bad = [(m, t) for m in KERNEL for t in GRAPH[m] if _layer(t) not in (None, -1)]
    assert bad == []


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH.get(node, ()):
            if target not in SOURCES:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in SOURCES:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_importing_the_gate_room_loads_neither_opencv_nor_grpc() -> None:
    gate_modules = sorted(m for m in SOURCES if m.startswith("appliance.gate"))
    script = (
        "import importlib, sys\n"
        f"for name in {gate_modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in ('cv2', 'grpc', 'onnxruntime') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "[]"


def _public_definitions(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.value is not None
        ):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_") and n not in ("log", "__all__")}


def _all_modules() -> list[str]:
    return sorted(
        m
        for m, path in SOURCES.items()
        if path.name != "__main__.py"
        # MicroPython code: runs on the board (or the emulated one), never imported here
        and not m.startswith(("firmware_bridge.mcu.", "testbed.emulated_pico.board_modules."))
    )


@pytest.mark.parametrize("module", _all_modules())
def test_all_lists_exactly_what_a_module_exports(module: str) -> None:
    """A module's ``__all__`` names its public definitions; a package's, what it offers."""
    path = SOURCES[module]
    tree = ast.parse(path.read_text())
    declared = importlib.import_module(module).__dict__.get("__all__")
    defined = _public_definitions(tree)
    if path.name == "__init__.py":
        assert declared is not None, f"{module} declares no __all__"
        offered = defined | {
            a.asname or a.name
            for node in tree.body
            if isinstance(node, ast.ImportFrom) and node.module != "__future__"
            for a in node.names
            if not (a.asname or a.name).startswith("_")
        }
        assert sorted(declared) == sorted(offered)
        return
    if not defined:
        return
    assert declared is not None, f"{module} defines public names but no __all__"
    imported = {
        a.asname or a.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom | ast.Import)
        for a in node.names
    }
    missing = defined - set(declared)
    unbound = set(declared) - defined - imported
    assert not missing and not unbound, f"{module}: unlisted {missing}, listed but absent {unbound}"
