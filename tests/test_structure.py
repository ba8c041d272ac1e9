"""The shape of the code: no import circles, no oversized modules, the stand-in apart.

Imports are read with ``ast`` (nothing is imported), including those inside
functions: an import deferred to call time still ties two modules together.
Only imports under ``if TYPE_CHECKING:`` are left out, as they never run.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("condorspawner", "proxy_tunnel", "containers", "hub_config", "localpool", "benchmarks")
SIZE_CHECKED = ("condorspawner", "localpool", "proxy_tunnel", "containers", "hub_config")
MAX_LINES = 450
# run by any account's /usr/bin/python3 (the tools' clients; the DAGMan job): the
# standard library and each other only
STDLIB_ONLY = ("localpool.clients", "localpool.dagman")


def modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the given packages."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _runs(node: ast.AST) -> bool:
    """False for an ``if TYPE_CHECKING:`` block."""
    if not isinstance(node, ast.If):
        return True
    test = node.test
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
    return name != "TYPE_CHECKING"


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        if isinstance(node, ast.If) and not _runs(node):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def _known(name: str, known: dict[str, Path]) -> str | None:
    """The module itself, else its closest enclosing package that is one of ours."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    known = modules(root, packages)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(filter(None, (_known(a.name, known) for a in node.names)))
                continue
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            if node.module:
                base = f"{base}.{node.module}" if node.level else node.module
            for alias in node.names:
                target = _known(f"{base}.{alias.name}", known) or _known(base, known)
                if target:
                    targets.add(target)
        targets.discard(name)
        graph[name] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle (a -> ... -> a) for each group of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_path_within(graph, group) for group in groups]


def _path_within(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest way round from the group's first module back to it."""
    start = min(group)
    paths = {start: [start]}
    todo = [start]
    while todo:
        node = todo.pop(0)
        for nxt in sorted(graph[node] & group):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                todo.append(nxt)
    return sorted(group)


def test_no_import_circles_among_the_projects_modules():
    found = circles(import_graph(ROOT, PACKAGES))
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_circle_finder_sees_a_circle_through_a_deferred_import(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import thing\n")
    (package / "b.py").write_text("def thing():\n    from pkg import c\n")
    (package / "c.py").write_text("from . import a\nif TYPE_CHECKING:\n    import pkg.b\n")
    (package / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n"
    )
    assert circles(import_graph(tmp_path, ("pkg",))) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_no_module_is_over_the_size_limit():
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in modules(ROOT, SIZE_CHECKED).values()
    }
    over = {name: lines for name, lines in sizes.items() if lines > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines (split them by concern): {over}"


def test_no_test_module_imports_another():
    # shared helpers live in conftest's fixtures and the helper modules (harness,
    # sessions, commands, realpool), so a test module can change without breaking others
    graph = import_graph(ROOT, ("tests",))
    borrowed = sorted(
        (name, target)
        for name, targets in graph.items()
        for target in targets
        if target.split(".")[-1].startswith("test_") and target != name
    )
    assert not borrowed, f"test modules importing other test modules: {borrowed}"


def test_localpool_and_the_product_share_no_code():
    # The product runs only condor_* commands; the stand-in must not borrow the code under test.
    graph = import_graph(ROOT, PACKAGES)
    crossing = sorted(
        (name, target)
        for name, targets in graph.items()
        for target in targets
        if {name.split(".")[0], target.split(".")[0]} == {"condorspawner", "localpool"}
    )
    assert not crossing


def _within(dotted: str, packages: tuple[str, ...]) -> bool:
    return any(dotted == p or dotted.startswith(f"{p}.") for p in packages)


def test_the_condor_tools_clients_need_only_the_standard_library():
    known = modules(ROOT, ("localpool",))
    clients = [name for name in known if _within(name, STDLIB_ONLY)]
    assert len(clients) >= 7, clients  # the packages are found: the check checks something
    for name in clients:
        tree = ast.parse(known[name].read_text())
        imported = set()
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            else:
                assert node.level == 0, f"{name}: relative import"
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        outside = {
            dotted
            for dotted in imported
            if dotted.split(".")[0] not in sys.stdlib_module_names | {"__future__"}
            and not _within(dotted, STDLIB_ONLY)
        }
        assert not outside, f"{name} imports {sorted(outside)}"


def test_the_design_docs_tables_name_what_exists():
    """docs/design.md's parts table names every module of the product (and no module that
    is gone), and every test its attack catalogue cites exists."""
    import re

    design = (ROOT / "docs" / "design.md").read_text()
    parts = design[design.index("## The parts") : design.index("## From the form")]
    named = set(re.findall(r"`((?:condorspawner|proxy_tunnel)/[\w/]*?\w+\.py)`", parts))
    for cell in re.findall(r"`((?:condorspawner|proxy_tunnel)/[\w/]*)`", parts):
        named |= {p.relative_to(ROOT).as_posix() for p in (ROOT / cell).glob("*.py")}
    shorthand = re.findall(r"`(\w+\.py)`", parts)  # "`options.py`, `pool_status.py`"
    modules = {
        p.relative_to(ROOT).as_posix()
        for package in ("condorspawner", "proxy_tunnel")
        for p in (ROOT / package).rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    }
    missing = sorted(m for m in modules if m not in named and Path(m).name not in shorthand)
    assert not missing, f"modules the parts table does not name: {missing}"
    gone = sorted(m for m in named if not (ROOT / m).exists())
    assert not gone, f"the parts table names modules that do not exist: {gone}"
    cited = re.findall(r"`(test_\w+\.py)::(test_\w+)`", design)
    assert cited
    for module, test in cited:
        text = (ROOT / "tests" / module).read_text()
        assert re.search(rf"def {test}\(", text), f"{module}::{test} is cited but not there"


def test_the_notebook_jobs_lifecycle_exists_once():
    """The spawner and condorsub lab adapt one NotebookJob: neither submits, follows,
    attaches or finishes a notebook job itself; CondorSpawner is one line of classes
    (no mixins)."""
    lifecycle = ("follow_job(", "finish_job(", "Attachment(", "condor.submit(", "submit_somewhere(")
    for adapter in ("condorspawner/spawner.py", "condorspawner/cli/lab.py"):
        text = (ROOT / adapter).read_text()
        assert "NotebookJob" in text, adapter
        assert not [call for call in lifecycle if call in text], adapter
    from condorspawner.spawner import CondorSpawner

    ours = [c for c in CondorSpawner.__mro__ if c.__module__.startswith("condorspawner")]
    assert [c.__name__ for c in ours] == ["CondorSpawner", "SpawnerConfig"]
    assert all(len(c.__bases__) == 1 for c in ours)


BUILD_LEFTOVERS = (".*", "node_modules", "build", "*.egg-info", "__pycache__", "tests")


def _wheel(project: Path, into: Path) -> zipfile.ZipFile:
    """``project``'s wheel, built offline with the test environment's setuptools from a
    copy of the sources (a build in the checkout would leave, and reuse, its build/)."""
    source = into / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*BUILD_LEFTOVERS))
    offline = ["--no-deps", "--no-build-isolation", "--no-index"]
    where = source / project.relative_to(ROOT)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", *offline, "-w", str(into), str(where)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = into.glob("*.whl")
    return zipfile.ZipFile(wheel)


def _installs(wheel: zipfile.ZipFile) -> tuple[set[str], str]:
    """The wheel's top-level names (not its metadata) and its entry points."""
    names = {name.split("/")[0] for name in wheel.namelist()}
    (info,) = {name for name in names if name.endswith(".dist-info")}
    return names - {info}, wheel.read(f"{info}/entry_points.txt").decode()


def test_a_site_installs_the_product_and_the_tests_stand_in_apart(tmp_path):
    """The product's wheel has no localpool (a stand-in a site must not get, with a
    ``localpool`` command); localpool is a distribution of its own for the tests and demo."""
    product, scripts = _installs(_wheel(ROOT, tmp_path / "product"))
    assert product == {"condorspawner", "proxy_tunnel", "containers", "hub_config"}
    assert "condorsub = condorspawner.cli:main" in scripts
    assert "condor = condorspawner.spawner:CondorSpawner" in scripts
    assert "localpool" not in scripts
    wheel = _wheel(ROOT / "localpool", tmp_path / "localpool")
    stand_in, scripts = _installs(wheel)
    assert stand_in == {"localpool"}
    shipped = {name for name in wheel.namelist() if name.endswith(".py")}
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "localpool").rglob("*.py")}
    assert shipped == sources, sources ^ shipped  # every role's package is in pyproject
    assert "localpool = localpool.cli:main" in scripts
