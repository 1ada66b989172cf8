"""fastcore/_core.pyi describes the compiled module: every public name defined in fastcore._core
has a stub, every stub names something the module has, and the same holds for class members."""
import ast
import inspect
import pathlib

from fastcore import _core

STUB = pathlib.Path(_core.__file__).with_name("_core.pyi")


def stubbed():
    tree = ast.parse(STUB.read_text())
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            members = set()
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                        members.add(item.name)
                    elif isinstance(item, ast.AnnAssign):
                        members.add(item.target.id)
            names[node.name] = members
    return names


def compiled():
    """Public names the compiled module itself defines (not modules or names it imports)."""
    names = {}
    for name, value in vars(_core).items():
        if name.startswith("_") or getattr(value, "__module__", None) != _core.__name__:
            continue
        members = set()
        if inspect.isclass(value):
            members = {member for member in vars(value) if not member.startswith("_")}
            if issubclass(value, BaseException):
                members |= {"status"}                     # set in __init__
        names[name] = members
    return names


def test_stub_file_ships_with_the_package():
    assert STUB.exists()
    assert STUB.with_name("py.typed").exists()


def test_every_public_name_has_a_stub_and_every_stub_a_name():
    assert set(stubbed()) == set(compiled())


def test_class_members_match():
    stubs, actual = stubbed(), compiled()
    for name in actual:
        assert stubs[name] == actual[name], name
