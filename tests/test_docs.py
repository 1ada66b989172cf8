"""The documentation kept in step with the code it describes.

README.md's options table ("Options and limits") is written by hand; ServerConfig is the one source
of the options. Every field must have a row, every row must name a field, and the default shown
must be the field's default, so an option added, renamed or re-defaulted in fastcore/config.py
fails here until README says so too. Skipped where README.md is not beside the tests (the
installed-wheel run of .ci/run copies only tests/ and pyext/).
"""
import dataclasses
import pathlib
import re

import pytest

from fastcore import ServerConfig

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
README = PROJECT_ROOT / "README.md"
OPTIONS_HEADING = "### Options and limits"


def options_table_rows():
    """[(names, defaults cell)] of README's options table: the first two cells of each body row."""
    if not README.exists():
        pytest.skip("README.md is not beside the tests")
    text = README.read_text(encoding="utf-8")
    assert OPTIONS_HEADING in text, f"README.md has no {OPTIONS_HEADING!r} section"
    section = text.split(OPTIONS_HEADING, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break                                       # the next section
        if not line.startswith("|") or line.startswith("|---") or line.startswith("| option "):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append((re.findall(r"`([a-z_]+)`", cells[0]), cells[1]))
    assert rows, "README.md's options table has no rows"
    return rows


def shown_defaults(names, cell):
    """The default of each name in `names` as README shows it: `a`, `b` pairs up with two names,
    a parenthesis is a gloss ("0 (never)"), and durations carry an " s"."""
    values = [re.sub(r"\([^)]*\)", "", value).strip().strip("`") for value in cell.split(", ")]
    assert len(values) == len(names), f"{names}: {len(names)} options but defaults {cell!r}"
    return dict(zip(names, values))


def as_field_value(spec, shown):
    if spec.type is bool:
        return {"off": False, "on": True}[shown]
    if spec.type is int:
        return int(shown, 0)
    if spec.type is float:
        return float(shown.removesuffix(" s"))
    return "" if shown == '""' else shown


def test_readme_options_table_lists_every_serverconfig_field_once():
    listed = [name for names, _ in options_table_rows() for name in names]
    fields = [spec.name for spec in dataclasses.fields(ServerConfig)]
    assert sorted(set(fields) - set(listed)) == [], "ServerConfig fields missing from README's options table"
    assert sorted(set(listed) - set(fields)) == [], "README's options table names options ServerConfig lacks"
    assert len(listed) == len(set(listed)), "an option has two rows"


def test_readme_options_table_shows_each_fields_default():
    specs = {spec.name: spec for spec in dataclasses.fields(ServerConfig)}
    for names, cell in options_table_rows():
        for name, shown in shown_defaults(names, cell).items():
            spec = specs[name]
            assert as_field_value(spec, shown) == spec.default, \
                f"README shows {name}={shown!r}, ServerConfig's default is {spec.default!r}"


def test_readme_first_command_is_the_one_ci_runs():
    """README's first command must work exactly as written; .ci/run runs it on a fresh clone (start
    it, request it, stop it). If one changes, the other must follow."""
    if not README.exists():
        pytest.skip("README.md is not beside the tests")
    text = README.read_text(encoding="utf-8")
    first_block = re.search(r"```sh\n(.*?)```", text, re.S).group(1).strip()
    assert first_block == "pip install . && fastcore", first_block
    ci = (PROJECT_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert '&& ' + first_block + ')' in ci
