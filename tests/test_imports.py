"""Imports run one way: errors and config at the bottom, the compiled core above them, the server's
parts, the server, then the WSGI entry points and the pure engine, and the command line on top.

The graph is read from the sources with `ast`, every import statement counted wherever it stands
(a function-level import of an upper layer is a circle at run time too: it is an edge here). The
package is the one `import fastcore` finds (fastcore.__file__), so the check holds for the
installed wheel as well as for the source tree. The compiled core's imports are read from its
Cython sources when they sit next to the tests (the source tree, and CI's wheel run, which copies
pyext/ beside tests/), and from the compiled module itself in any case (the classes and functions it
holds that another fastcore module defined).

Importing a submodule runs its package's __init__ first; that is how packages work, not an import
a module chose, so it is not an edge.
"""
import ast
import pathlib
import re

import fastcore
from fastcore import _core

PACKAGE_DIR = pathlib.Path(fastcore.__file__).resolve().parent
PYEXT_DIR = pathlib.Path(__file__).resolve().parent.parent / "pyext"
COMPILED = "fastcore._core"

# Bottom first. An import may point to its own layer or any layer below, never above; within a
# layer the imports must not form a cycle either (test_no_import_cycle). Every module must be
# placed here, so a new module makes its author decide where it stands.
LAYERS = [
    # fastcore.proxy (trusted proxy headers) stands with them: the config validates
    # forwarded_allow_ips with it and the compiled core calls it.
    ("leaves", {"fastcore.errors", "fastcore.proxy", "fastcore.config"}),
    # The ASGI rules both engines follow (fastcore.asgi: response checks, scope paths, lifespan):
    # the compiled core calls them too, so they stand below it.
    # fastcore.websocket (the WebSocket handshake and message rules) builds on fastcore.asgi's.
    ("shared rules", {"fastcore.asgi", "fastcore.websocket"}),
    ("compiled core", {COMPILED}),
    ("server parts", {"fastcore.sockets", "fastcore.access", "fastcore.metrics", "fastcore.process_stats", "fastcore.supervisor", "fastcore.watchdog",
                      "fastcore.wsgi_adapter", "fastcore.demo"}),
    ("server", {"fastcore.server"}),
    ("entry points and the pure engine", {"fastcore.wsgi", "fastcore.asgi_server", "fastcore.pure.*"}),
    ("facades and command line", {"fastcore", "fastcore.pure", "fastcore.reload", "fastcore.config_file", "fastcore.cli",
                                  "fastcore.__main__"}),
]


def module_files():
    """{module name: path} for every Python module of the package."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = module_files()
ALL_MODULES = set(MODULES) | {COMPILED}


def resolve(name):
    """The fastcore module an imported dotted name lands in (the longest known prefix), or None."""
    while name:
        if name in ALL_MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def python_imports(module, path):
    """Modules of fastcore that `module` imports, at any depth of its source."""
    is_package = path.name == "__init__.py"
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module
            # `from package import name` imports the submodule package.name when there is one.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in ALL_MODULES else base
                     for alias in node.names]
        else:
            continue
        targets.update(filter(None, map(resolve, names)))
    targets.discard(module)
    return targets


_CYTHON_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import\s|import\s+([\w.]+))", re.M)   # not cimport


def compiled_imports_from_source():
    """Modules of fastcore the compiled core's sources import (None when they are not here)."""
    sources = sorted(PYEXT_DIR.glob("*.pyx")) + sorted(PYEXT_DIR.glob("*.pxi"))
    if not sources:
        return None
    targets = set()
    for path in sources:
        for match in _CYTHON_IMPORT.finditer(path.read_text()):
            name = match.group(1) or match.group(2)
            assert not name.startswith("."), f"{path.name}: use absolute imports in the compiled core"
            target = resolve(name)
            if target is not None:
                targets.add(target)
    targets.discard(COMPILED)
    return targets


def compiled_imports_from_module():
    """Modules of fastcore whose classes or functions the compiled module holds at its top level."""
    targets = set()
    for value in vars(_core).values():
        origin = getattr(value, "__module__", None)
        if isinstance(origin, str) and origin != COMPILED and resolve(origin) is not None:
            targets.add(resolve(origin))
    return targets


def import_graph():
    graph = {module: python_imports(module, path) for module, path in MODULES.items()}
    graph[COMPILED] = (compiled_imports_from_source() or set()) | compiled_imports_from_module()
    return graph


def layer_of(module):
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            if module == member or (member.endswith(".*") and module.startswith(member[:-1])):
                return index
    return None


def test_the_walk_sees_the_package_and_function_level_imports():
    graph = import_graph()
    assert {"fastcore", "fastcore.server", "fastcore.pure.server", COMPILED} <= set(graph)
    assert "fastcore.supervisor" in graph["fastcore.server"]     # imported inside serve_forever
    assert "fastcore.server" in graph["fastcore.pure.server"]    # `from .. import server`


def test_every_module_has_a_layer():
    assert [module for module in ALL_MODULES if layer_of(module) is None] == []


def test_imports_never_point_up():
    upward = [f"{module} ({LAYERS[layer_of(module)][0]}) -> {target} ({LAYERS[layer_of(target)][0]})"
              for module, targets in import_graph().items() for target in sorted(targets)
              if layer_of(target) > layer_of(module)]
    assert upward == []


def test_no_import_cycle():
    graph = import_graph()
    done, path = set(), []

    def visit(module):
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        path.append(module)
        for target in sorted(graph[module]):
            visit(target)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_errors_and_config_are_leaves():
    graph = import_graph()
    assert graph["fastcore.errors"] == set()
    assert graph["fastcore.proxy"] <= {"fastcore.errors"}
    assert graph["fastcore.config"] <= {"fastcore.errors", "fastcore.proxy"}


def test_the_compiled_core_imports_only_what_stands_below_it():
    """_core may raise fastcore's errors (a leaf below it), read trusted proxy headers with
    fastcore.proxy (a leaf) and follow the ASGI rules both engines share (fastcore.asgi), and nothing else of fastcore: no call back up into the adapters that
    build on it."""
    below = {"fastcore.errors", "fastcore.config", "fastcore.proxy", "fastcore.asgi"}
    from_source = compiled_imports_from_source()
    if from_source is not None:
        assert from_source <= below, from_source
    assert compiled_imports_from_module() <= below
