"""The house rules on imports, checked from the source with ``ast`` (nothing is imported).

1. No import cycle among perpjax's modules at module level. The graph has one node per module
   (``perpjax/config/__init__.py`` is the node ``perpjax.config``) and an edge for every import that
   runs when the module is first imported: statements at the top level of the file, in class bodies and
   under ``if`` / ``try``, but not inside functions (they run later) nor under ``if TYPE_CHECKING:``.
   Relative imports are resolved. ``from X import y`` is an edge to ``X.y`` when that is a module, and an
   edge to ``X`` when ``y`` is a name that X's ``__init__`` defines (a re-export: the package must have
   run first) or when X is not a package the importer lives in (importing ``X.y`` runs X's ``__init__``).
   Importing ``a.b.c`` also runs ``a.b``'s ``__init__``, so it is an edge to ``a.b`` unless the importer
   lives inside ``a.b`` (it is then already running). A package's own re-exports (``from .x import f``
   in ``__init__``) are edges from the package.
   The same graph with the imports inside functions added must have no cycle either, with no exception:
   moving an import into a function hides a cycle from the module-level rule without removing it (all the
   cycles issue 21 named were hidden that way; the last, driver -> store -> engine, ended when the store
   stopped importing the engine).

2. No file imports a private name across files: ``from m import _x`` (a single leading underscore; dunders
   such as ``__version__`` are public) is refused wherever it appears, function bodies included, in
   ``perpjax/``, ``tests/``, ``benchmarks/`` and ``scripts/``. Binding a public name to a private alias
   (``from scipy import stats as _stats``) is fine: what is read from the other module is public.
   Only first-party modules count (another project's ``jax._src`` is its own business).
   Private modules follow the Equinox rule: ``_x.py`` may be imported only by its own package's
   ``__init__.py`` (``from ._x import f as f``, a re-export). Anything a second module needs is a public
   interface and gets a public module (the models' shared checks live in ``perpjax/checks.py``).

3. No file reads a private attribute of a first-party module it imported: ``M._x`` where ``M`` is bound by
   ``import perpjax.m as M`` / ``from perpjax.s import m as M`` (relative imports too; ``M.sub._x`` through
   a submodule), nor ``getattr(M, "_x")`` / ``monkeypatch.setattr(M, "_x", ...)`` with the name spelled out.
   Only names bound to modules count (attributes of objects, ``self._x``, are a class's own business), so
   the rule has no false positives from objects; a name bound to a module anywhere in a file is taken as
   that module throughout the file.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "perpjax"
SCANNED = ("perpjax", "tests", "benchmarks", "scripts")
ATTRIBUTE_CALLS = ("getattr", "setattr", "hasattr", "delattr")  # builtins, and monkeypatch's setattr / delattr


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def resolve(importer: str, package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names (``node.module`` resolved against ``level``)."""
    if not node.level:
        return node.module or ""
    base = importer.split(".") if package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def load_time_imports(tree: ast.Module, deferred: bool = False):
    """Import statements that run when the module is imported (not in functions nor TYPE_CHECKING); with
    ``deferred``, those in function bodies too."""
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and not deferred:
            continue
        elif isinstance(node, ast.If) and is_type_checking(node.test):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def add_edge(graph: dict[str, set[str]], mods, importer: str, own: set[str], target: str, named: bool = True):
    """Edges for ``importer`` importing ``target``: to the packages above it that are not already running
    (``own``), and to ``target`` itself unless it is one of those running packages and only its submodules
    are named (``named=False``)."""
    for parent in ancestors(target):
        if parent in mods and parent not in own:
            graph[importer].add(parent)
    if target in mods and target != importer and (named or target not in own):
        graph[importer].add(target)


def import_graph(deferred: bool = False) -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for importer, path in mods.items():
        package = is_package(path)
        own = set(ancestors(importer)) | ({importer} if package else set())  # packages already running
        for node in load_time_imports(ast.parse(path.read_text(), str(path)), deferred):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add_edge(graph, mods, importer, own, alias.name)
                continue
            base = resolve(importer, package, node)
            if base not in mods and not any(a in mods for a in ancestors(base)):
                continue  # outside perpjax
            attributes = False
            for alias in node.names:
                if f"{base}.{alias.name}" in mods:
                    add_edge(graph, mods, importer, own, f"{base}.{alias.name}")
                else:
                    attributes = True  # a name X's __init__ (or module) must have defined
            add_edge(graph, mods, importer, own, base, named=attributes)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a closed path) for every strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan, iterative over a recursion-free worklist
        work = [(v, iter(sorted(graph[v])))]
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        while work:
            node, edges = work[-1]
            for w in edges:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [cycle_in(graph, set(c)) for c in components]


def cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest closed path through the component's first module (breadth-first inside the component)."""
    start = min(component)
    previous = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]
                    while previous[path[-1]] is not None:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def private_imports() -> list[str]:
    """Every import of a private name or module of a first-party module (perpjax, tests, benchmarks, scripts)
    from another file, as ``file:line: what``."""
    found = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            where, name, package = path.relative_to(ROOT), module_name(path), is_package(path)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom):
                    targets = [resolve(name, package, node)]
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.Import):
                    targets, names = [alias.name for alias in node.names], []
                else:
                    continue
                for target in targets:
                    parts = target.split(".")
                    if parts[0] not in SCANNED:
                        continue  # another project's internals are its own business
                    found += [f"{where}:{node.lineno}: imports the private name {n} from {target}"
                              for n in names if private(n)]
                    for i, part in enumerate(parts):
                        if private(part) and not (package and name == ".".join(parts[:i])):
                            found.append(f"{where}:{node.lineno}: imports from the private module {target}")
                            break
    return sorted(set(found))


def scanned_files() -> dict[str, Path]:
    """Every first-party module (perpjax, tests, benchmarks, scripts) by its dotted name."""
    return {module_name(p): p for folder in SCANNED for p in sorted((ROOT / folder).rglob("*.py"))}


def module_aliases(tree: ast.Module, name: str, package: bool, files) -> dict[str, str]:
    """Local name -> first-party module, for every import in the file that binds a module (anywhere in it)."""
    alias: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in files:
                    alias[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(name, package, node)
            for a in node.names:
                if f"{base}.{a.name}" in files:
                    alias[a.asname or a.name] = f"{base}.{a.name}"
    return alias


def private_attributes(source: str, name: str, package: bool, files) -> list[tuple[int, str]]:
    """(line, ``module._name``) for every private attribute of an imported first-party module the source
    reads: ``M._x``, ``M.sub._x``, ``getattr(M, "_x")``, ``monkeypatch.setattr(M, "_x", v)``."""
    tree = ast.parse(source)
    alias = module_aliases(tree, name, package, files)

    def module_of(e: ast.expr) -> str | None:
        if isinstance(e, ast.Name):
            return alias.get(e.id)
        if isinstance(e, ast.Attribute):
            m = module_of(e.value)
            return f"{m}.{e.attr}" if m and f"{m}.{e.attr}" in files else None
        return None

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            m = module_of(node.value)
            if m:
                found.append((node.lineno, f"{m}.{node.attr}"))
        elif isinstance(node, ast.Call) and len(node.args) >= 2:
            f = node.func
            called = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            what = node.args[1]
            if (called in ATTRIBUTE_CALLS and isinstance(what, ast.Constant) and isinstance(what.value, str)
                    and private(what.value)):
                m = module_of(node.args[0])
                if m:
                    found.append((node.lineno, f"{m}.{what.value}"))
    return sorted(found)


def private_attribute_reads() -> list[str]:
    files = scanned_files()
    found = []
    for name, path in files.items():
        where = path.relative_to(ROOT)
        found += [f"{where}:{line}: reads the private attribute {what}"
                  for line, what in private_attributes(path.read_text(), name, is_package(path), files)]
    return sorted(found)


def test_graph_sees_the_package():
    graph = import_graph()
    assert "perpjax.engine.driver" in graph and "perpjax.config" in graph
    assert "perpjax.engine.model" in graph["perpjax.engine.driver"]  # from .model import RiskModel
    assert "perpjax.engine.driver" in graph["perpjax.engine"]  # a package's re-export is its edge


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles at module level:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_function_level_imports_count_for_cycles():
    """The deferred graph sees an import inside a function: driver imports the store at module level and
    nothing under ``store`` is deferred, while ``cli.simulate`` imports ``api`` only inside functions."""
    assert "perpjax.api" not in import_graph()["perpjax.cli.simulate"]
    assert "perpjax.api" in import_graph(deferred=True)["perpjax.cli.simulate"]
    tree = ast.parse("import a\ndef f():\n    import b\nif TYPE_CHECKING:\n    import c\n")
    assert [n.names[0].name for n in load_time_imports(tree)] == ["a"]
    assert [n.names[0].name for n in load_time_imports(tree, deferred=True)] == ["a", "b"]


def test_no_import_cycle_through_imports_inside_functions():
    """An import moved into a function to dodge a cycle hides the cycle from the test above; the module-level
    rule alone passed before the cycles of issue 21 were fixed. Counting imports in function bodies too,
    there is no cycle at all."""
    cycles = find_cycles(import_graph(deferred=True))
    assert not cycles, "import cycles through imports inside functions:\n" + "\n".join(" -> ".join(c) for c in cycles)


LEAVES = ("perpjax.errors", "perpjax.version", "perpjax.datadir", "perpjax.checks")


def test_leaf_modules_import_nothing_from_perpjax():
    """What many modules need (the exceptions, the version, the data's location, the models' checks) lives in
    modules that import nothing from perpjax, not even inside functions; the chunk store imports no engine."""
    graph = import_graph(deferred=True)
    assert {leaf: graph[leaf] for leaf in LEAVES} == dict.fromkeys(LEAVES, set())
    assert not any(m.startswith("perpjax.engine") or m == "perpjax.config" for m in graph["perpjax.store"])


def test_no_private_import_across_files():
    found = private_imports()
    assert not found, "private names imported across files:\n" + "\n".join(found)


def test_private_attribute_finder():
    """What the attribute rule catches and what it leaves alone, on a made-up file in ``tests``."""
    files = {"perpjax", "perpjax.sensitivities", "perpjax.sensitivities.pathwise", "perpjax.random", "tests.t"}
    src = "\n".join([
        "import perpjax",
        "from perpjax import sensitivities as S",
        "from perpjax.sensitivities import pathwise as PW",
        "import jax",
        "def f(monkeypatch, obj):",
        "    from perpjax import random as R",
        "    PW._chunk(1)",  # 7: a private function of a module
        "    S.pathwise._hidden",  # 8: through a submodule
        "    perpjax.random._key",  # 9: through the package
        "    getattr(R, '_words')",  # 10: spelled out
        "    monkeypatch.setattr(PW, '_x', 1)",  # 11
        "    PW.path_grads, R.__name__, obj._private, jax._src, S.PARAMS._x",  # public, dunder, object, other
        "    getattr(R, 'seed_key'), getattr(obj, '_y')",
    ])
    found = private_attributes(src, "tests.t", False, files)
    assert found == [(7, "perpjax.sensitivities.pathwise._chunk"), (8, "perpjax.sensitivities.pathwise._hidden"),
                     (9, "perpjax.random._key"), (10, "perpjax.random._words"),
                     (11, "perpjax.sensitivities.pathwise._x")]


def test_no_private_attribute_of_another_module():
    found = private_attribute_reads()
    assert not found, "private attributes of other modules read:\n" + "\n".join(found)
