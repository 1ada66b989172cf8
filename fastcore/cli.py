"""The command line: `fastcore [options] module:app` (also `python -m fastcore ...`).

    fastcore myproject.wsgi:application --host 0.0.0.0 --port 8000 --threads 8
    fastcore main:app --loop uvloop --lifespan on        # an ASGI app (FastAPI, ...), detected
    fastcore 'myapp:create_app()' --access-log          # an app factory, called once at startup
    FASTCORE_THREADS=8 fastcore myapp:app                # every option also from FASTCORE_<OPTION>
    fastcore --interface native handlers:handle          # a native handler, request -> Response
    fastcore myapp:app --log-config logging.json         # a logging.config.dictConfig file (or .toml)
    fastcore                                             # no app: the built-in demo (fastcore.demo)

The server options are generated from ServerConfig's fields (the one source of options): the
field `max_body_size` is `--max-body-size` and FASTCORE_MAX_BODY_SIZE, with the field's type and
help text; a bool field is a `--flag` / `--no-flag` pair. A flag beats the environment, which
beats the default.

A user's mistake ends the process with one line on stderr and no traceback: exit status 2 for a
usage error (unknown or malformed option, bad value, app not found), 1 for a runtime one (the
address cannot be bound, the app's module or factory raised, an ASGI app's lifespan startup
failed; --log-level debug adds the traceback of the latter).
"""
import argparse
import ast
import dataclasses
import importlib
import inspect
import json
import logging
import logging.config
import logging.handlers
import os
import queue
import socket
import sys
import traceback

from . import __version__, config_file, reload
from .asgi import is_asgi_app
from .config import ServerConfig
from .demo import demo_app
from .errors import ConfigError, FastcoreError, LifespanFailed, ServerStateError, SupervisorError
from .wsgi_adapter import refuse_async_callable

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
INTERFACES = ("auto", "wsgi", "asgi", "native")
ENV_PREFIX = "FASTCORE_"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
_METAVARS = {int: "N", float: "SECONDS", str: "TEXT"}


class UsageError(FastcoreError):
    """Exit status 2: the command line (or the environment) asks for something impossible."""


class RuntimeFailure(FastcoreError):
    """Exit status 1: the request was sound but running it failed. `cause`: an exception raised by
    the user's code (importing the app's module, its factory), whose traceback --log-level debug shows."""

    def __init__(self, message, cause=None):
        super().__init__(message)
        self.cause = cause
        self.show_traceback = False


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (fastcore --help lists the options)")


def _flag(name):
    return "--" + name.replace("_", "-")


def _env_name(name):
    return ENV_PREFIX + name.upper()


def _octal(text):
    """A permission mode as chmod users write it: 660, 0660 or 0o660 (never decimal)."""
    digits = text.strip()
    digits = digits[2:] if digits[:2].lower() == "0o" else digits
    if not digits or any(c not in "01234567" for c in digits):
        raise ValueError(f"invalid octal mode: {text!r} (write it as for chmod, e.g. 660)")
    return int(digits, 8)


def _converter(spec):
    kind = spec.type
    if spec.metadata.get("octal"):
        def convert_octal(text):
            try:
                return _octal(text)
            except ValueError as error:
                raise argparse.ArgumentTypeError(str(error)) from None
        convert_octal.__name__ = "octal"
        return convert_octal

    def convert(text):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None

    convert.__name__ = kind.__name__
    return convert


def build_parser():
    parser = _Parser(
        prog="fastcore",
        description="Serve a WSGI or ASGI application (or a native fastcore handler) with fastcore. "
                    "Without APP, the built-in demo app is served.",
        epilog=f"Every option can also come from the environment: {ENV_PREFIX}<OPTION>, e.g. "
               f"{ENV_PREFIX}THREADS=8, {ENV_PREFIX}ACCESS_LOG=1. A flag beats the environment.",
    )
    parser.add_argument("--version", action="version", version=f"fastcore {__version__}")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="read options from this TOML file (default: fastcore.toml, else [tool.fastcore] "
                             "in pyproject.toml, in the working directory, if there); flags and the "
                             "environment beat it")
    parser.add_argument("-b", "--bind", action="append", default=None, metavar="ADDRESS",
                        help="where to listen, as gunicorn takes it: HOST:PORT, [::1]:PORT, unix:PATH or "
                             "fd://N (one listener: instead of --host/--port, --uds or --fd; env "
                             f"{ENV_PREFIX}BIND)")
    parser.add_argument("app", nargs="?", metavar="APP",
                        help="module:attribute (module alone: module:application), or module:factory() "
                             "for an app factory called once at startup, e.g. 'myapp:create_app()'")
    parser.add_argument("--interface", choices=INTERFACES, default=None,
                        help=f"APP is an ASGI application (auto, the default: when it is an async callable "
                             f"(scope, receive, send)), else a WSGI application; or a native handler, "
                             f"request -> Response (env {ENV_PREFIX}INTERFACE)")
    parser.add_argument("--engine", choices=("compiled", "pure"), default=None,
                        help=f"the compiled core (default) or fastcore.pure, the same server in pure Python "
                             f"with httptools, for comparison (env {ENV_PREFIX}ENGINE)")
    parser.add_argument("--factory", action="store_true", default=None,
                        help="APP names a factory: call it (without arguments) to get the app")
    parser.add_argument("--reload", action="store_true", default=None,
                        help="development: restart the server when a source file changes (watchfiles when "
                             "installed: pip install fastcore-server[reload]; else stat polling); "
                             "not with --processes > 1")
    parser.add_argument("--reload-dir", action="append", default=None, metavar="DIR", dest="reload_dirs",
                        help="with --reload: a directory to watch (repeatable; default: --app-dir)")
    parser.add_argument("--reload-include", action="append", default=None, metavar="GLOB", dest="reload_includes",
                        help="with --reload: file names to watch besides *.py (repeatable, e.g. '*.html')")
    parser.add_argument("--app-dir", default=None, metavar="DIR",
                        help=f"directory put first on sys.path to import APP from (default: the current one; "
                             f"env {ENV_PREFIX}APP_DIR)")
    options = parser.add_argument_group("server options (fastcore.ServerConfig)")
    for spec in dataclasses.fields(ServerConfig):
        default = f"{spec.default:o}" if spec.metadata.get("octal") else repr(spec.default)
        text = f"{spec.metadata['help']} (default: {default}; env {_env_name(spec.name)})"
        if spec.type is bool:
            options.add_argument(_flag(spec.name), dest=spec.name, action=argparse.BooleanOptionalAction,
                                 default=None, help=text)
        else:
            metavar = "MODE" if spec.metadata.get("octal") else _METAVARS.get(spec.type, "VALUE")
            options.add_argument(_flag(spec.name), *_ALIASES.get(spec.name, ()), dest=spec.name,
                                 type=_converter(spec), default=None, metavar=metavar, help=text)
    return parser


_ALIASES = {"processes": ("-w", "--workers")}          # gunicorn's names for the same option
_BIND_FIELDS = ("host", "port", "uds", "fd")


def parse_bind(text):
    """A gunicorn-style address -> the ServerConfig fields it sets: HOST[:PORT] ({"host", "port"};
    ":PORT" is every interface), [IPV6][:PORT], unix:PATH ({"uds"}), fd://N ({"fd"})."""
    text = text.strip()
    if text.startswith("unix:"):
        if not text[5:]:
            raise UsageError("--bind unix:PATH needs a path")
        return {"uds": text[5:]}
    if text.startswith("fd://"):
        if not text[5:].isdigit():
            raise UsageError(f"--bind {text!r}: fd://N takes a file descriptor number")
        return {"fd": int(text[5:])}
    port = None
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1:] if end > 0 else "?"
        if end < 0 or (rest and not rest.startswith(":")):
            raise UsageError(f"--bind {text!r}: write an IPv6 address as [::1]:8000")
        host, port = text[1:end], rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        host = host or "0.0.0.0"
    else:
        host = text                                     # a name, an IPv4 address, a bare IPv6 one
    if not host:
        raise UsageError("--bind needs an address")
    fields = {"host": host}
    if port is not None:
        if not port.isdigit():
            raise UsageError(f"--bind {text!r}: the port must be a number")
        fields["port"] = int(port)
    return fields


def _from_environment(spec, environ):
    name = _env_name(spec.name)
    text = environ.get(name)
    if text is None:
        return None
    if spec.type is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise UsageError(f"{name}={text!r}: expected one of 1/true/yes/on or 0/false/no/off")
    try:
        return _octal(text) if spec.metadata.get("octal") else spec.type(text)
    except ValueError:
        kind = "octal mode" if spec.metadata.get("octal") else f"{spec.type.__name__} value"
        raise UsageError(f"{name}={text!r}: invalid {kind}") from None


def _from_file(spec, value, where):
    """A config file's value for a ServerConfig field, as the field's type (TOML has them)."""
    if spec.metadata.get("octal") and isinstance(value, str):
        try:
            return _octal(value)
        except ValueError as error:
            raise UsageError(f"{where}: {spec.name}: {error}") from None
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, spec.type) or (isinstance(value, bool) and spec.type is not bool):
        raise UsageError(f"{where}: {spec.name} must be {spec.type.__name__}, not {type(value).__name__} "
                         f"({value!r})")
    return value


def _bind_fields(args, environ, file_values, where):
    """The host/port/uds/fd fields --bind sets, with the level it came from: "flag", "env",
    "file", or None when no bind was given."""
    if args.bind:
        if len(args.bind) > 1:
            raise UsageError("one --bind only: fastcore listens on one socket (run another instance, or "
                             "put a proxy in front, for a second address)")
        given = [_flag(name) for name in _BIND_FIELDS if getattr(args, name) is not None]
        if given:
            raise UsageError(f"--bind and {'/'.join(given)} both say where to listen: give one")
        return parse_bind(args.bind[0]), "flag"
    if environ.get(ENV_PREFIX + "BIND"):
        return parse_bind(environ[ENV_PREFIX + "BIND"]), "env"
    if "bind" in file_values:
        if not isinstance(file_values["bind"], str):
            raise UsageError(f"{where}: bind must be a string such as \"0.0.0.0:8000\"")
        return parse_bind(file_values["bind"]), "file"
    return {}, None


def _choice(environ, file_values, where, name, choices, default):
    """A command-line-only choice (interface, engine) from the environment, else the file."""
    variable = ENV_PREFIX + name.upper()
    if environ.get(variable):
        value, source = environ[variable], variable
    elif file_values.get(name) is not None:
        value, source = file_values[name], f"{where}: {name}"
    else:
        return default
    if value not in choices:
        raise UsageError(f"{source}={value!r}: expected {', '.join(choices[:-1])} or {choices[-1]}")
    return value


def resolve(argv=None, environ=None, directory="."):
    """Parse the command line, the environment and the config file (fastcore.config_file, found
    in `directory`): (argparse namespace, ServerConfig). A flag beats the environment, which beats
    the file, which beats the default; --bind (or FASTCORE_BIND, or the file's bind) stands at its
    own level for host/port/uds/fd."""
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    field_names = {spec.name for spec in dataclasses.fields(ServerConfig)}
    try:
        found = config_file.find(args.config, directory)
        where = found[0] if found else ""
        file_values = config_file.normalized(found[1], field_names, where) if found else {}
    except config_file.ConfigFileError as error:
        raise UsageError(str(error)) from None
    if "workers" in file_values:
        if "processes" in file_values:
            raise UsageError(f"{where}: workers and processes are the same option: give one")
        file_values["processes"] = file_values.pop("workers")
    bind, bind_level = _bind_fields(args, environ, file_values, where)
    values = {}
    for spec in dataclasses.fields(ServerConfig):
        value = getattr(args, spec.name)
        if value is None and bind_level == "flag" and spec.name in bind:
            value = bind[spec.name]
        if value is None:
            value = _from_environment(spec, environ)
        if value is None and bind_level == "env" and spec.name in bind:
            value = bind[spec.name]
        if value is None and spec.name in file_values:
            value = _from_file(spec, file_values[spec.name], where)
        if value is None and bind_level == "file" and spec.name in bind:
            value = bind[spec.name]
        if value is not None:
            values[spec.name] = value
    if args.app is None and "app" in file_values:
        args.app = str(file_values["app"])
    if args.factory is None and file_values.get("factory") is not None:
        args.factory = bool(file_values["factory"])
    if args.interface is None:
        args.interface = _choice(environ, file_values, where, "interface", INTERFACES, "auto")
    if args.engine is None:
        args.engine = _choice(environ, file_values, where, "engine", ("compiled", "pure"), "compiled")
    if args.app_dir is None:
        args.app_dir = environ.get(ENV_PREFIX + "APP_DIR") or file_values.get("app_dir") or "."
    try:
        config = ServerConfig(**values)
    except ConfigError as error:
        raise UsageError(f"invalid option: {error}") from None
    if config.log_level.lower() not in LOG_LEVELS:
        raise UsageError(f"invalid option: log_level must be one of {', '.join(LOG_LEVELS)}, "
                         f"not {config.log_level!r}")
    args.log_level_given = "log_level" in values     # with log_config, only a level asked for applies
    args.config_file = where or None
    return args, config


# -- loading the app -----------------------------------------------------------------------------

def _parse_attribute(text):
    """'name', 'a.b', 'factory()' or "factory('x', debug=True)" -> (dotted names, call or None).
    A call's arguments must be literals."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise UsageError(f"cannot read {text!r}: expected an attribute name or a call like create_app()") from None
    call = None
    if isinstance(node, ast.Call):
        try:
            call = ([ast.literal_eval(arg) for arg in node.args],
                    {keyword.arg: ast.literal_eval(keyword.value) for keyword in node.keywords})
        except ValueError:
            raise UsageError(f"the arguments in {text!r} must be literals (strings, numbers, ...)") from None
        if any(keyword.arg is None for keyword in node.keywords):
            raise UsageError(f"cannot read {text!r}: no **arguments")
        node = node.func
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise UsageError(f"cannot read {text!r}: expected an attribute name or a call like create_app()")
    names.append(node.id)
    return list(reversed(names)), call


def _describe_failure(error):
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def load_app(spec, factory=False, interface="wsgi"):
    """Import what `spec` ("module:attr", "module:factory()", "module") names and return it.
    With interface "auto", it must be told apart first: see detect_interface."""
    module_name, colon, attribute = spec.partition(":")
    module_name = module_name.strip()
    if not module_name or (colon and not attribute.strip()):
        raise UsageError(f"APP must look like module:attribute, not {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing == module_name or module_name.startswith(missing + "."):
            raise UsageError(f"cannot import {module_name!r}: no module named {missing!r} "
                             f"(looked in {os.getcwd()} and sys.path; see --app-dir)") from None
        raise RuntimeFailure(f"importing {module_name!r} failed: {_describe_failure(error)}", error) from None
    except BaseException as error:
        if isinstance(error, KeyboardInterrupt):
            raise
        raise RuntimeFailure(f"importing {module_name!r} failed: {_describe_failure(error)}", error) from None

    if colon:
        names, call = _parse_attribute(attribute)
    else:
        candidates = [name for name in ("application", "app") if hasattr(module, name)]
        if not candidates:
            raise UsageError(f"module {module_name!r} has no attribute 'application' or 'app'; "
                             f"name the app: {module_name}:NAME")
        names, call = [candidates[0]], None
    target = module
    walked = module_name
    for index, name in enumerate(names):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise UsageError(f"{walked!r} has no attribute {name!r}") from None
        walked = f"{module_name}:{'.'.join(names[:index + 1])}"
    if factory and call is None:
        call = ([], {})
    if call is not None:
        if not callable(target):
            raise UsageError(f"{walked!r} is not callable, so it cannot be an app factory")
        try:
            target = target(*call[0], **call[1])
        except Exception as error:
            raise RuntimeFailure(f"the app factory {spec!r} failed: {_describe_failure(error)}", error) from None
    if not callable(target):
        raise UsageError(f"{spec!r} is a {type(target).__name__}, not a callable application")
    interface = detect_interface(spec, target, interface)
    if interface != "asgi":
        _check_arity(spec, target, interface)
    return target


def detect_interface(spec, target, interface):
    """The interface `target` is served with: "auto" is "asgi" for an ASGI app (fastcore.asgi.
    is_asgi_app), else "wsgi"; "asgi" must be one."""
    if interface == "auto":
        return "asgi" if is_asgi_app(target) else "wsgi"
    if interface == "asgi" and not is_asgi_app(target):
        raise UsageError(f"{spec!r} is not an ASGI application: an ASGI app is an async callable "
                         f"(scope, receive, send); if it is an app factory, add '()' or pass --factory")
    return interface


def _check_arity(spec, target, interface):
    """An async callable (an ASGI app, an `async def` WSGI app) or a factory passed as the app
    (module:create_app without '()') would fail on every request: refuse it now, saying which."""
    expected = ("a WSGI application is a plain callable (environ, start_response)" if interface == "wsgi"
                else "a native handler is a plain callable, request -> Response")
    try:
        refuse_async_callable(target, expected)
    except TypeError as error:
        raise UsageError(f"{spec!r}: {error}") from None
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return
    arguments = ("environ", "start_response") if interface == "wsgi" else ("request",)
    try:
        signature.bind(*arguments)
    except TypeError:
        what = "a WSGI application takes (environ, start_response)" if interface == "wsgi" \
            else "a native handler takes (request)"
        raise UsageError(f"{spec!r} has the signature {signature}, but {what}; if it is an app factory, "
                         f"add '()' (module:create_app()) or pass --factory") from None


# -- logging -------------------------------------------------------------------------------------

_stderr_handler = None          # the handler configure_logging put on the "fastcore" logger


def read_log_config(path):
    """The dictConfig dictionary in `path`: JSON, or TOML when the name ends in .toml. A file that
    cannot be read or parsed is the user's mistake (UsageError)."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise UsageError(f"cannot read the log config {path!r}: {error.strerror or error}") from None
    try:
        if path.endswith(".toml"):
            import tomllib
            loaded = tomllib.loads(data.decode("utf-8"))
        else:
            loaded = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        kind = "TOML" if path.endswith(".toml") else "JSON"
        raise UsageError(f"the log config {path!r} is not valid {kind}: {error}") from None
    if not isinstance(loaded, dict):
        raise UsageError(f"the log config {path!r} must hold a dictionary (logging.config.dictConfig's schema)")
    return loaded


def apply_log_config(config, level_given=False):
    """--log-config: the file's dictConfig, before the app is imported (so its import-time lines
    follow it). Loggers that exist already (fastcore's own) stay enabled unless the file says
    "disable_existing_loggers": true: dictConfig's default would silence fastcore.error. A
    --log-level the user gave still sets the "fastcore" logger's level afterwards."""
    settings = read_log_config(config.log_config)
    settings.setdefault("version", 1)
    settings.setdefault("disable_existing_loggers", False)
    try:
        logging.config.dictConfig(settings)
    except (ValueError, TypeError, AttributeError, ImportError) as error:
        cause = error.__cause__ if error.__cause__ is not None else error
        raise UsageError(f"the log config {config.log_config!r} was refused by logging.config: "
                         f"{' '.join(str(error).split())}"
                         + (f" ({cause})" if cause is not error else "")) from None
    if level_given:
        logging.getLogger("fastcore").setLevel(getattr(logging, config.log_level.upper()))


def configure_logging(config):
    """fastcore's log lines (the "fastcore" logger and those below it) to stderr at
    config.log_level; with access_log, the access lines go to stdout (or config.access_log_file)
    through a queue and a listener thread, so workers never wait for the terminal. Returns the QueueListener (to stop)
    or None.

    Only fastcore's loggers are configured, never the root logger: an app that configures its own
    (Django's LOGGING, say) would otherwise print each line twice, once through its handler and
    once through ours on the root (gunicorn, too, leaves the root alone). The "fastcore" logger
    does not propagate, so an app's root handler does not double ours either. Called again (in a
    child process), it replaces its handler instead of adding a second.

    With config.log_config the file (apply_log_config, already applied) is the whole setup: no
    handler is added here; the access lines go where the file sends "fastcore.access", which is
    only made to pass INFO when the file gave it no level."""
    global _stderr_handler
    access_logger = logging.getLogger("fastcore.access")
    if config.log_config:
        if config.access_log and access_logger.level == logging.NOTSET:
            access_logger.setLevel(logging.INFO)
        return None
    level = getattr(logging, config.log_level.upper())
    logger = logging.getLogger("fastcore")
    if _stderr_handler is not None:
        logger.removeHandler(_stderr_handler)
    _stderr_handler = logging.StreamHandler(sys.stderr)
    _stderr_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(_stderr_handler)
    logger.setLevel(level)
    logger.propagate = False
    if not config.access_log:
        return None
    access_logger.setLevel(logging.INFO)
    access_logger.propagate = False
    records = queue.SimpleQueue()
    access_logger.addHandler(logging.handlers.QueueHandler(records))
    if config.access_log_file == "-":
        output = logging.StreamHandler(sys.stdout)
    else:
        output = logging.FileHandler(config.access_log_file, encoding="utf-8")     # appends
    output.setFormatter(logging.Formatter("%(message)s"))
    listener = logging.handlers.QueueListener(records, output)
    listener.start()
    return listener


# -- main ----------------------------------------------------------------------------------------

def run(argv=None):
    args, config = resolve(argv)
    if config.log_config:
        apply_log_config(config, args.log_level_given)
    if args.reload and not reload.is_reload_child():
        return _run_reloader(argv, args, config)
    if args.engine == "pure":
        try:
            from .pure.server import ASGIServer, Server, WSGIServer
        except ModuleNotFoundError as error:
            if error.name != "httptools":
                raise
            raise UsageError(str(error)) from None
    else:
        from .server import ASGIServer, Server, WSGIServer
    if args.app is None:
        server = Server(demo_app, config=config)           # Server adds the access log if asked
        server.add_static("/health", b"OK\n")
        banner = "fastcore demo serving on {url} (Ctrl-C to stop)"
    else:
        sys.path.insert(0, os.path.abspath(args.app_dir))
        try:
            target = load_app(args.app, factory=bool(args.factory), interface=args.interface)
        except RuntimeFailure as failure:
            failure.show_traceback = config.log_level.lower() == "debug"
            raise
        interface = detect_interface(args.app, target, args.interface)
        if interface in ("wsgi", "asgi"):
            try:
                server = (WSGIServer if interface == "wsgi" else ASGIServer)(target, config=config)
            except ConfigError as error:
                raise UsageError(f"invalid option: {error}") from None
        else:
            server = Server(target, config=config)
        banner = f"fastcore serving {args.app} ({interface.upper() if interface != 'native' else 'native'})" \
                 " on {url} (Ctrl-C to stop)"
    listener = None
    if config.processes > 1:
        # The parent forks: no thread may run in it, so the access log's listener thread (if any)
        # is started in each child instead.
        configure_logging(config.replace(access_log=False))
    else:
        listener = configure_logging(config)
    # serve_forever installs the SIGINT / SIGTERM handlers before it starts the server and prints
    # the banner only then: a signal sent by whoever saw the banner always stops it cleanly.
    if config.processes > 1:
        banner = banner.replace(" (Ctrl-C", f" with {config.processes} processes (Ctrl-C")
    announce = lambda started: print(banner.format(url=started.url), flush=True)  # noqa: E731
    try:
        if config.processes > 1:
            from .supervisor import Supervisor

            def child_setup():
                child_listener = configure_logging(config) if config.access_log else None
                return child_listener.stop if child_listener is not None else None
            try:
                Supervisor(server, on_ready=announce, child_setup=child_setup).run()
            except SupervisorError as error:
                raise RuntimeFailure(str(error)) from None
        elif server.serve_forever(on_ready=announce) is False:
            return 1                                    # requests were cut off (logged by stop())
    except LifespanFailed as error:
        lifespan_failure = RuntimeFailure(str(error), error.__cause__)
        lifespan_failure.show_traceback = config.log_level.lower() == "debug"
        raise lifespan_failure from None
    except ConfigError as error:                        # found at start: loop="uvloop" without uvloop
        raise UsageError(f"invalid option: {error}") from None
    except ServerStateError as error:                   # an engine built without ASGI, say
        raise RuntimeFailure(str(error)) from None
    except OSError as error:
        raise _listen_failure(config, error) from None
    finally:
        if listener is not None:
            listener.stop()
    return 0


def _listen_failure(config, error):
    """The RuntimeFailure for an OSError from opening the listening socket."""
    # A socket.gaierror's errno is a negative EAI_* code os.strerror() cannot name ("Unknown
    # error -2"): its strerror is the resolver's own message ("Name or service not known").
    # Other errors: os.strerror, as create_server() wraps their strerror in more words.
    if isinstance(error, socket.gaierror) or not error.errno or error.errno < 0:
        reason = error.strerror or str(error)
    else:
        reason = os.strerror(error.errno)
    where = (config.uds if config.uds else f"fd {config.fd}" if config.fd >= 0
             else f"{config.host}:{config.port}")
    return RuntimeFailure(f"cannot listen on {where}: {reason}")


def _run_reloader(argv, args, config):
    """--reload: this process watches the sources and runs the server as a child (fastcore.reload)."""
    if config.processes > 1:
        raise UsageError("--reload restarts one serving process; it cannot be used with --processes > 1")
    directories = [os.path.abspath(path) for path in (args.reload_dirs or [args.app_dir])]
    missing = [path for path in directories if not os.path.isdir(path)]
    if missing:
        raise UsageError(f"--reload-dir {missing[0]!r} is not a directory")
    includes = list(reload.DEFAULT_INCLUDES) + list(args.reload_includes or [])
    child_argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return reload.serve_with_reload(child_argv, config, directories, includes,
                                        lambda text: print(f"fastcore: reload: {text}", file=sys.stderr, flush=True))
    except OSError as error:
        raise _listen_failure(config, error) from None


def main(argv=None):
    """Console entry point: returns the exit status."""
    try:
        return run(argv)
    except UsageError as error:
        print(f"fastcore: error: {error}", file=sys.stderr)
        return 2
    except RuntimeFailure as error:
        if error.cause is not None and not error.show_traceback:
            print(f"fastcore: error: {error} (--log-level debug shows the traceback)", file=sys.stderr)
        else:
            print(f"fastcore: error: {error}", file=sys.stderr)
            if error.cause is not None:
                traceback.print_exception(error.cause, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
