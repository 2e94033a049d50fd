"""The package's layers, as a graph: core, then tasks, then training; causal, routing and lenses (the readouts beside
the logit lens) side by side above them (none imports another); experiment over both, ui and study (the sweeps over run folders) side by side over
experiment, the CLI over everything. A module imports from
its own layer and the ones ``BELOW`` it names, never another (every import is read from the source, including those
inside functions), and no two modules import each other, directly or through others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import workbench

PACKAGE = Path(__file__).resolve().parents[1] / "workbench"
ORDER = ["core", "tasks", "training", "causal", "routing", "lenses", "experiment", "ui", "study", "cli"]
BELOW = {  # layer -> the layers it may import from, besides its own
    "core": set(),
    "tasks": {"core"},
    "training": {"core", "tasks"},
    "causal": {"core", "tasks", "training"},
    "routing": {"core", "tasks", "training"},
    "lenses": {"core", "tasks", "training"},
    "experiment": {"core", "tasks", "training", "causal", "routing", "lenses"},
    "ui": {"core", "tasks", "training", "causal", "routing", "lenses", "experiment"},
    "study": {"core", "tasks", "training", "causal", "routing", "lenses", "experiment"},
    "cli": set(ORDER),
}


def _layer(module: str) -> str:
    """workbench.training.loop -> training; workbench.cli / cli_reference / the package itself -> cli."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ORDER[:-1] else "cli"


def _imports(path: Path) -> list[str]:
    module = "workbench." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            target = ".".join(p for p in (base, node.module or "") if p) if node.level else node.module or ""
            found += [f"{target}.{alias.name}" if not node.module else target for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [name for name in found if name == "workbench" or name.startswith("workbench.")]


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_module_imports_a_layer_outside_its_own_and_those_below(path):
    mine = _layer("workbench." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
    outside = [name for name in _imports(path) if _layer(name) not in BELOW[mine] | {mine}]
    assert not outside, f"{path.relative_to(PACKAGE)} ({mine}) imports outside {sorted(BELOW[mine])}: {outside}"


def _module_of(name: str) -> str | None:
    """The package module an imported name lives in (``workbench.core.models.load_model`` -> core.models)."""
    while name.startswith("workbench"):
        path = PACKAGE.parent.joinpath(*name.split("."))
        if path.with_suffix(".py").is_file():
            return name
        if (path / "__init__.py").is_file():
            return name
        name = name.rsplit(".", 1)[0]
    return None


def _import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in MODULES:
        module = "workbench." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        graph[module] = {m for n in _imports(path) if (m := _module_of(n)) and m != module and m != "workbench"}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of the graph (modules in order, the first repeated at the end), or []."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_no_import_cycle():
    cycle = _cycle(_import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def test_every_module_is_in_a_layer():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "cli_reference.py")]
    assert not loose, f"modules outside the layers: {loose}"
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")} == set(ORDER)


def test_the_rule_sees_a_violation(tmp_path):
    """The walker itself: a core module importing the experiment layer, relatively and absolutely, is caught."""
    bad = PACKAGE / "core" / "_probe_violation.py"
    bad.write_text("from ..experiment import layout\nimport workbench.ui.plots\n")
    try:
        names = _imports(bad)
    finally:
        bad.unlink()
    assert names == ["workbench.experiment", "workbench.ui.plots"]
    assert all(_layer(n) not in BELOW["core"] for n in names)


SHORT_NAMES = sorted(workbench._API)


@pytest.mark.parametrize("name", SHORT_NAMES)
def test_short_api_names_resolve(name):
    import workbench as wb

    wb.load_config, wb.RunLayout  # noqa: B018  loads the subpackages: none of them may shadow a short name
    assert callable(getattr(wb, name)) and name in dir(wb), name  # every short name is a function or class


def test_short_api_rule_and_unknown_names():
    import workbench as wb

    assert wb.default_classifier_layer(30) == 16 and wb.default_classifier_layer(22) == 12
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        wb.no_such_name  # noqa: B018


def _exists(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_every_import_of_the_package_names_a_module_that_exists(path):
    """Lazy imports inside functions too (a renamed module would otherwise fail only when that command runs)."""
    missing = [n for n in _imports(path) if not _exists(n) and not _exists(n.rsplit(".", 1)[0])]
    assert not missing, f"{path.relative_to(PACKAGE)} imports what does not exist: {missing}"
