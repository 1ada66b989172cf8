"""The command line's config file: `fastcore.toml`, or `[tool.fastcore]` in pyproject.toml, in the
working directory, or the file --config names.

    # fastcore.toml                           # or, in pyproject.toml: [tool.fastcore]
    app = "myproject.wsgi:application"
    bind = "0.0.0.0:8000"
    workers = 4
    threads = 4
    access_log = true
    forwarded_allow_ips = "10.0.0.0/8"

Its keys are ServerConfig's fields (max_body_size, or max-body-size as on the command line) and
what the command line takes besides: app, interface, engine, factory, app_dir, bind, workers.
The values go through the same ServerConfig as flags and environment variables do, below them:
a flag beats the environment, which beats the file, which beats the default. Only the first file
found is read: --config FILE, else fastcore.toml, else pyproject.toml when it has [tool.fastcore].
"""
import os
import tomllib

FILE_NAME = "fastcore.toml"
COMMAND_LINE_KEYS = ("app", "interface", "engine", "factory", "app_dir", "bind", "workers")


class ConfigFileError(ValueError):
    """The file cannot be read, is not TOML, or holds a key or value fastcore does not take."""


def find(explicit=None, directory="."):
    """(path, the [tool.fastcore]-or-whole-file table) of the config file to read, or None."""
    if explicit is not None:
        return explicit, _read(explicit, whole=True)
    path = os.path.join(directory, FILE_NAME)
    if os.path.isfile(path):
        return FILE_NAME, _read(path, whole=True)
    path = os.path.join(directory, "pyproject.toml")
    if os.path.isfile(path):
        table = _read(path, whole=False)
        if table is not None:
            return "pyproject.toml [tool.fastcore]", table
    return None


def _read(path, whole):
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ConfigFileError(f"cannot read the config file {path!r}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigFileError(f"the config file {path!r} is not valid TOML: {error}") from None
    if whole:
        return document
    table = document.get("tool", {}).get("fastcore")
    if table is not None and not isinstance(table, dict):
        raise ConfigFileError(f"{path}: [tool.fastcore] must be a table")
    return table


def normalized(table, field_names, where):
    """{key with underscores: value}, every key one fastcore takes."""
    values = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in field_names and name not in COMMAND_LINE_KEYS:
            raise ConfigFileError(f"{where}: unknown key {key!r} (the keys are ServerConfig's options, "
                                  f"as in fastcore --help, and {', '.join(COMMAND_LINE_KEYS)})")
        if name in values:
            raise ConfigFileError(f"{where}: {key!r} is given twice")
        values[name] = value
    return values
