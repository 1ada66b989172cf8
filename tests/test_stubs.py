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
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and not item.name.startswith("_"):
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


def stubbed_parameters():
    """{(class or None, function name): [parameter names]} for the stubs' public functions and methods."""
    tree = ast.parse(STUB.read_text())
    found = {}

    def names(function):
        arguments = function.args
        return [argument.arg for argument in arguments.posonlyargs + arguments.args + arguments.kwonlyargs]

    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            found[(None, node.name)] = names(node)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if (isinstance(item, ast.FunctionDef) and not item.name.startswith("_")
                        and not any(isinstance(d, ast.Name) and d.id == "property" for d in item.decorator_list)):
                    found[(node.name, item.name)] = names(item)
    return found


def test_parameters_match_where_the_module_tells_them():
    """Cython functions carry their signatures (not __init__/__cinit__ slots): the stub's
    parameter names are the compiled ones."""
    checked = 0
    for (class_name, name), parameters in stubbed_parameters().items():
        owner = getattr(_core, class_name) if class_name else _core
        try:
            signature = inspect.signature(getattr(owner, name))
        except (TypeError, ValueError):
            continue
        assert list(signature.parameters) == parameters, (class_name, name)
        checked += 1
    assert checked >= 10
