"""fastcore's benchmark suite: fastcore against pure-Python and native servers, with wrk.

    python -m bench [--quick] [--only a,b] [--scenarios a,b] [--duration S] [--rounds N] [--unpinned]
    python -m bench --ab REV_A REV_B [--servers a,b] [--scenarios a,b] [--rounds N] ...
    python bench/run.py ...                      (the same)

For every round (default 2), for every scenario, for every server: start the server fresh (pinned to
CPU 0 with taskset), wait until it answers, check its answers, then run a discarded wrk warm-up and
the measured wrk run (pinned to CPU 1), reading the server's CPU time and RSS from /proc. The idle
scenario holds 10,000 keep-alive connections open from a separate client process instead and
measures the server's RSS. Prints progress with the time left, then writes
bench/results-<timestamp>.json, .md (the tables, between markers) and .png (the chart);
--update-results writes the tables and chart into the committed bench/RESULTS.md and RESULTS.png
instead. The fastcore measured is the checkout's in-place build if there is one, else the installed
fastcore-server (bench/servers.py chooses). See bench/README.md.

With --ab, two revisions of this repository are built (bench/ab.py) and only their fastcore servers
run, the A and B runs of each (scenario, server) back to back, in ABBA order round after round
(run_ab); the B/A table (bench/report.py) goes to stdout and the records to
bench/results-ab-<timestamp>.json. One run of a server is run_once, for both modes.
"""
import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
if __package__ in (None, ""):           # `python bench/run.py`: make `bench` importable as a package
    sys.path.insert(0, ROOT)

from bench import ab, apps, report  # noqa: E402
from bench import servers as launchers  # noqa: E402

SERVERS = list(launchers.SERVERS)
ALIASES = {"fastcore-handler": "fastcore-native"}        # the harness's earlier name
CLK_TCK = os.sysconf("SC_CLK_TCK")
WRK_HINT = "install it with `apt-get install -y wrk`"

# name: wrk settings. "connections" None means --connections (default 64).
SCENARIOS = {
    "keepalive": {"path": "/", "desc": "GET / on {c} keep-alive connections, one request at a time each"},
    "pipelined": {"path": "/", "script": "pipeline.lua", "depth": True,
                  "desc": "GET / on {c} connections, {depth} pipelined requests in flight each (bench/pipeline.lua)"},
    "c1000": {"path": "/", "connections": 1000, "desc": "GET / on 1,000 keep-alive connections"},
    "close": {"path": "/", "headers": ["Connection: close"],
              "desc": "GET / with `Connection: close` on {c} connections: a new TCP connection per request"},
    "echo4k": {"path": "/echo", "script": "echo.lua", "script_args": [str(apps.ECHO_SIZE)], "method": "POST",
               "desc": "POST /echo of a 4 KiB body, sent back, on {c} keep-alive connections (bench/echo.lua)"},
    "big64k": {"path": "/big", "desc": "GET /big, a 64 KiB response, on {c} keep-alive connections"},
    "blocking": {"path": "/blocking", "connections": 12,
                 "desc": "GET /blocking on 12 keep-alive connections: one request in ten blocks 100 ms in the "
                         "app (bench/apps.py), as a database call would"},
    "blocking64": {"path": "/blocking", "connections": 64,
                   "desc": "GET /blocking on 64 keep-alive connections: the blocking app with more clients than "
                           "any server has threads (issue 13 measures c12 and c64)"},
    "flask": {"path": apps.REAL_APPS["flask"][1], "interface": "wsgi",
              "desc": "a Flask app: GET " + apps.REAL_APPS["flask"][1] + " (JSON; path parameter and query "
                      "string) on {c} keep-alive connections (bench/apps.py)"},
    "django": {"path": apps.REAL_APPS["django"][1], "interface": "wsgi",
               "desc": "a Django view rendering a small template: GET " + apps.REAL_APPS["django"][1]
                       + " on {c} keep-alive connections (bench/apps.py)"},
    "fastapi": {"path": apps.REAL_APPS["fastapi"][1], "interface": "asgi",
                "desc": "a FastAPI route: GET " + apps.REAL_APPS["fastapi"][1] + " (JSON; path parameter) "
                        "on {c} keep-alive connections (bench/apps.py)"},
    "idle": {"desc": "RSS of the server with {idle:,} idle keep-alive connections (one request each) "
                     "minus its RSS idle, divided by the connections held"},
}
QUICK = {"duration": 2, "warmup": 1}


def log(message=""):
    print(message, file=sys.stderr, flush=True)


def fmt_duration(seconds):
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# -- environment --------------------------------------------------------------------------------

def which_fastcore(pure=False):
    """(extension file, None) for the fastcore the servers import, or (None, why not). Asked of a
    child running bench/servers.py, which chooses it: the checkout's in-place build, else the
    installed fastcore-server."""
    argv = [sys.executable, os.path.join(BENCH, "servers.py"), "--which-fastcore"] + (["pure"] if pure else [])
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60)
    if out.returncode == 0 and out.stdout.strip():
        return out.stdout.strip().splitlines()[-1], None
    return None, (out.stderr.strip().splitlines() or ["?"])[-1]


_measured_core = []                     # the extension file found at the start of the run


def fastcore_build_id():
    """(path, mtime, size) of the fastcore._core the servers import, to notice a rebuild during a run."""
    if not _measured_core:
        _measured_core.append(which_fastcore()[0])
    path = _measured_core[0]
    if path is None or not os.path.exists(path):
        return None
    st = os.stat(path)
    where = os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path
    return f"{where} {datetime.datetime.fromtimestamp(st.st_mtime).isoformat(timespec='seconds')} {st.st_size}"


def command_output(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip()
    except (OSError, subprocess.SubprocessError):
        return None


def package_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info():
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    lscpu = command_output(["lscpu"]) or ""
    match = re.search(r"^Model name:\s*(.+)$", lscpu, re.M)
    try:
        with open(os.path.join(ROOT, "fastcore", "__init__.py")) as f:
            fastcore_version = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)
    except (OSError, AttributeError):
        fastcore_version = None
    nginx = launchers.find_nginx()
    return {
        "nproc": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "cpu_model": match.group(1).strip() if match else model,
        "kernel": platform.release(),
        "os": (command_output(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]) or "").strip() or None,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "packages": {"fastcore (in place)": fastcore_version,
                     **{name: package_version(name) for name in
                        ("granian", "gunicorn", "waitress", "uvicorn", "uvloop", "httptools", "bjoern",
                         "matplotlib")}},
        "wrk": ((command_output(["wrk", "-v"]) or "").splitlines() or [None])[0],
        "nginx": command_output([nginx, "-v"]) if nginx else None,
        "nginx_echo_module": launchers.nginx_has_echo(),
        "git_commit": command_output(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(command_output(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])),
        "fastcore_build": fastcore_build_id(),
        "rlimit_nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
    }


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


def server_available(name):
    """None when `name` can run here, else a one-line reason with the install hint."""
    _, modules, hint, _, _ = launchers.SERVERS[name]
    if name == "nginx":
        return None if launchers.find_nginx() else f"nginx not found: {hint}"
    if name.startswith("fastcore") and fastcore_build_id() is None:
        return f"fastcore is neither built in place nor installed ({which_fastcore()[1]}): {hint}"
    if name.startswith("pure"):
        # import it for real, in a child: fastcore.pure may be half-written or fail at import
        path, why = which_fastcore(pure=True)
        return None if path else f"`import fastcore.pure` fails ({why})"
    missing = [m for m in modules if not launchers._module_present(m)]
    if missing:
        return f"{', '.join(missing)} not installed: {hint}"
    return None


def not_applicable(name, scenario):
    """Why `scenario` does not apply to server `name`, or None."""
    why = launchers.SERVERS[name][4].get(scenario)
    if why:
        return why
    interface = SCENARIOS[scenario].get("interface")
    if interface and launchers.INTERFACES[name] != interface:
        article = "an" if interface == "asgi" else "a"
        return f"{article} {interface.upper()} app; this server runs {launchers.INTERFACES[name]} apps"
    if name == "nginx" and scenario == "echo4k" and not launchers.nginx_has_echo():
        return "nginx's echo module is missing: `apt-get install -y libnginx-mod-http-echo`"
    return None


# -- /proc accounting ---------------------------------------------------------------------------

def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # comm (field 2) may contain spaces and parentheses: split after the last ')'
    return data[data.rindex(")") + 2:].split()


def tree_pids(root_pid):
    """root_pid and all its descendants (launchers exec the server, but gunicorn, granian and
    the nginx launcher run without exec have children)."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                parents[int(name)] = int(_stat_fields(name)[1])  # field 4: ppid
            except (OSError, ValueError, IndexError):
                pass
    pids, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in pids:
                pids.add(pid)
                frontier.append(pid)
    return pids


def tree_cpu_split(pids):
    """(user, system) CPU seconds of the processes. A process's /proc/PID/stat sums all its threads.
    System time includes the loopback TCP work the kernel does inside the server's send and recv
    calls, which is why it is reported apart: it is the part no server code can remove."""
    user = system = 0
    for pid in pids:
        try:
            fields = _stat_fields(pid)
            user, system = user + int(fields[11]), system + int(fields[12])  # fields 14, 15: utime, stime
        except (OSError, ValueError, IndexError):
            pass
    return user / CLK_TCK, system / CLK_TCK


def tree_rss_kib(pids):
    """Sum of VmRSS over the processes, KiB."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError, IndexError):
            pass
    return total


def cpu_busy_seconds(cpus):
    """user+nice+system+steal seconds of the given CPUs (all CPUs if None), from /proc/stat.
    irq/softirq and idle/iowait are left out: loopback TCP work runs in softirq and belongs to
    the benchmark itself rather than to other load."""
    total = 0
    with open("/proc/stat") as f:
        for line in f:
            name, *values = line.split()
            if not name.startswith("cpu") or name == "cpu":
                continue
            if cpus is not None and int(name[3:]) not in cpus:
                continue
            v = [int(x) for x in values]
            total += v[0] + v[1] + v[2] + (v[7] if len(v) > 7 else 0)
    return total / CLK_TCK


# -- servers ------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """One server started by bench/servers.py. fastcore_from: a directory holding another build of
    fastcore (the A/B mode's), which the launcher imports instead of this checkout's."""

    def __init__(self, kind, args, pinned, workdir, fastcore_from=None):
        self.kind = kind
        self.port = free_port()
        argv = [sys.executable, os.path.join(BENCH, "servers.py"), kind, "--port", str(self.port),
                "--threads", str(args.threads), "--max-connections", str(args.idle_connections + 1000),
                "--workdir", workdir]
        if fastcore_from:
            argv += ["--fastcore-from", fastcore_from]
        if pinned:
            argv = ["taskset", "-c", "0"] + argv      # taskset execs: the child pid is the launcher's
        self.argv = argv
        self.log_path = os.path.join(workdir, f"{kind}-{self.port}.log")
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self._pids = None

    def wait_ready(self, timeout=30.0):
        """Poll until `GET /` is answered correctly (a port that accepts is not enough: gunicorn's
        arbiter listens before its worker runs); fail early if the process exits."""
        deadline = time.monotonic() + timeout
        detail = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with status {self.proc.returncode} before answering: "
                                   + self.log_tail(600).strip())
            ok, detail, _ = http_probe(self.port, timeout=1.0)
            if ok:
                return
            time.sleep(0.02)
        raise RuntimeError(f"no correct answer on port {self.port} within {timeout:.0f} s ({detail}): "
                           + self.log_tail(600).strip())

    def alive(self):
        return self.proc.poll() is None

    def pids(self, refresh=False):
        if self._pids is None or refresh:
            self._pids = tree_pids(self.proc.pid)
        return self._pids

    def rss_kib(self):
        return tree_rss_kib(self.pids(refresh=True))

    def fastcore_files(self):
        """[fastcore.__file__, fastcore._core.__file__ or None] as the launcher printed them before
        answering (its FASTCORE line), or None for a server that is not fastcore's."""
        for line in self.log_tail(100_000).splitlines():
            if line.startswith("FASTCORE\t"):
                return [None if f == "-" else f for f in line.split("\t")[1:3]]
        return None

    def log_tail(self, limit=3000):
        if not self.log_file.closed:
            self.log_file.flush()
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-limit:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after `timeout`. Returns a note when the exit was not clean."""
        note = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                note = f"did not exit within {timeout:.0f} s of SIGTERM; killed"
                for pid in self.pids(refresh=True):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                self.proc.wait()
        rc = self.proc.returncode
        if note is None and rc not in (0, -signal.SIGTERM):
            note = f"exit status {rc} after SIGTERM"
        self.log_file.close()
        return note


def _read_response(sock, data, deadline, method):
    """Read one response from sock (data: bytes already received). Returns (status, head, body,
    rest) or raises ValueError / OSError / TimeoutError. Content-Length and chunked framing."""
    def fill(buffer):
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError("connection closed")
        return buffer + chunk

    while b"\r\n\r\n" not in data:
        data = fill(data)
    end = data.index(b"\r\n\r\n")
    head = data[:end].decode("latin-1")
    data = data[end + 4:]
    status = head.split(" ", 2)[1] if " " in head else "?"
    length = re.search(r"^content-length:\s*(\d+)\s*$", head, re.I | re.M)
    if method == "HEAD":
        return status, head, b"", data
    if length:
        n = int(length.group(1))
        while len(data) < n:
            data = fill(data)
        return status, head, data[:n], data[n:]
    if re.search(r"^transfer-encoding:.*chunked", head, re.I | re.M):
        body = b""
        while True:
            while b"\r\n" not in data:
                data = fill(data)
            line, data = data.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            if size == 0:                              # last chunk: optional trailers, then CRLF
                while not data.startswith(b"\r\n") and b"\r\n\r\n" not in data:
                    data = fill(data)
                data = data[2:] if data.startswith(b"\r\n") else data[data.index(b"\r\n\r\n") + 4:]
                return status, head, body, data
            while len(data) < size + 2:
                data = fill(data)
            body += data[:size]
            data = data[size + 2:]
    raise ValueError(f"response without Content-Length or chunked framing: {head!r}")


def http_probe(port, method="GET", path="/", body=b"", expect=apps.HELLO, depth=1, timeout=3.0):
    """Send `depth` pipelined requests on one connection; return (ok, detail, first response head).
    ok means `depth` complete 200 responses whose body is `expect`."""
    request = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               + (f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n" if method == "POST" else "")
               + "\r\n").encode() + body
    first_head, answers = None, 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(request * depth)
            deadline = time.monotonic() + timeout
            data = b""
            while answers < depth:
                status, head, got, data = _read_response(s, data, deadline, method)
                if first_head is None:
                    first_head = head
                if status != "200" or got != expect:
                    shown = got if len(got) <= 40 else got[:40] + f"... ({len(got)} bytes)".encode()
                    return False, f"response {answers + 1}/{depth}: status {status}, body {shown!r}", first_head
                answers += 1
            return True, f"{depth} x 200 OK", first_head
    except (OSError, ValueError) as error:
        return False, f"after {answers}/{depth} responses: {type(error).__name__}: {error}", first_head


def scenario_probes(scenario, depth):
    """The sanity checks run before a scenario: (label, http_probe keyword arguments)."""
    if scenario == "pipelined":
        return [("GET / x1", {}), (f"GET / x{depth} pipelined", {"depth": depth})]
    if scenario == "echo4k":
        body = bytes(range(256)) * (apps.ECHO_SIZE // 256)
        return [("POST /echo 4 KiB", {"method": "POST", "path": "/echo", "body": body, "expect": body})]
    if scenario == "big64k":
        return [("GET /big", {"path": "/big", "expect": apps.BIG})]
    if scenario in apps.REAL_APPS:
        _, target, expected = apps.REAL_APPS[scenario]
        return [(f"GET {target}", {"path": target, "expect": expected})]
    return [("GET /", {})]


# -- wrk ----------------------------------------------------------------------------------------

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_wrk(out):
    result = {}
    match = re.search(r"Requests/sec:\s*([\d.]+)", out)
    result["rps"] = float(match.group(1)) if match else None
    match = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", out)
    result["requests"] = int(match.group(1)) if match else None
    result["latency_ms"] = {}
    for pct, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.M):
        # wrk 4.x sometimes prints 0.00us for high percentiles (wg/wrk#236, #354: its coordinated-
        # omission correction adds samples below the recorded minimum); report those as unknown
        result["latency_ms"][pct] = float(value) * UNITS[unit] if float(value) > 0 else None
    match = re.search(r"^\s+Latency\s+([\d.]+)(us|ms|s|m|h)\s+([\d.]+)(us|ms|s|m|h)\s+([\d.]+)(us|ms|s|m|h)", out, re.M)
    if match:
        result["latency_mean_ms"] = float(match.group(1)) * UNITS[match.group(2)]
        result["latency_max_ms"] = float(match.group(5)) * UNITS[match.group(6)]
    match = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    result["non_2xx"] = int(match.group(1)) if match else 0
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                       map(int, match.groups()))) if match else \
        {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    result["errors"] = result["non_2xx"] + sum(result["socket_errors"].values())
    return result


def wrk_argv(port, scenario, duration, args, pinned):
    spec = SCENARIOS[scenario]
    connections = spec.get("connections") or args.connections
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for header in spec.get("headers", []):
        argv += ["-H", header]
    if spec.get("script"):
        argv += ["-s", os.path.join(BENCH, spec["script"])]
    argv.append(f"http://127.0.0.1:{port}{spec['path']}")
    script_args = ([str(args.depth)] if spec.get("depth") else []) + spec.get("script_args", [])
    if script_args:
        argv += ["--"] + script_args
    if pinned:
        argv = ["taskset", "-c", "1"] + argv
    return argv


def run_wrk(argv, duration, sample=None):
    """Run wrk; call sample() about every 0.25 s while it runs. Returns (rc, output, wrk CPU s)."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + duration + 60
        next_sample = time.monotonic() + 0.25
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if sample is not None and time.monotonic() >= next_sample:
                sample()
                next_sample = time.monotonic() + 0.25
            time.sleep(0.05)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    return proc.returncode, text, usage.ru_utime + usage.ru_stime


# -- measurements --------------------------------------------------------------------------------

def measure_wrk(server, scenario, args, pinned):
    """One warm-up and one measured wrk run against a started server."""
    record = {}
    warm = wrk_argv(server.port, scenario, args.warmup, args, pinned)
    if args.warmup > 0:
        warm_rc, warm_out, _ = run_wrk(warm, args.warmup)
        if warm_rc != 0:
            record["warmup_error"] = warm_out.strip()[-500:]
    if not server.alive():
        record["error"] = f"server exited ({server.proc.returncode}) during warm-up"
        return record
    argv = wrk_argv(server.port, scenario, args.duration, args, pinned)
    rss = [server.rss_kib()]
    bench_cpus = {0, 1} if pinned else None
    pids = server.pids(refresh=True)
    busy_before, split_before, t0 = cpu_busy_seconds(bench_cpus), tree_cpu_split(pids), time.monotonic()
    rc, out, client_cpu = run_wrk(argv, args.duration, sample=lambda: rss.append(server.rss_kib()))
    wall = time.monotonic() - t0
    split_after = tree_cpu_split(server.pids(refresh=True) | pids)
    user, system = split_after[0] - split_before[0], split_after[1] - split_before[1]
    cpu = user + system
    other = max(0.0, cpu_busy_seconds(bench_cpus) - busy_before - cpu - client_cpu)
    rss.append(server.rss_kib())
    record.update(parse_wrk(out))
    record.update({"command": " ".join(argv), "wrk_rc": rc, "wrk_output": out, "wall_s": round(wall, 3),
                   "server_cpu_s": round(cpu, 3), "client_cpu_s": round(client_cpu, 3),
                   "server_cpu_pct": round(100 * cpu / wall, 1) if wall else None,
                   "client_cpu_pct": round(100 * client_cpu / wall, 1) if wall else None,
                   "other_cpu_pct": round(100 * other / wall, 1) if wall else None,
                   "rss_start_kib": rss[0], "rss_max_kib": max(rss), "rss_end_kib": rss[-1]})
    record["req_per_cpu_s"] = (round(record["requests"] / cpu) if record.get("requests") and cpu > 0 else None)
    record["server_user_s"], record["server_system_s"] = round(user, 3), round(system, 3)
    if record.get("requests"):
        record["user_us_per_req"] = round(1e6 * user / record["requests"], 3)
        record["system_us_per_req"] = round(1e6 * system / record["requests"], 3)
    if rc != 0:
        record["error"] = f"wrk exit status {rc}: {out.strip()[-300:]}"
    elif record.get("rps") is None:
        record["error"] = "no Requests/sec in wrk's output"
    if not server.alive():
        record["error"] = f"server exited ({server.proc.returncode}) during the run"
    else:
        ok, detail, _ = http_probe(server.port)
        record["probe_after"] = detail
        if not ok:
            record["error"] = f"server not answering GET / after the run: {detail}"
    return record


def measure_idle(server, args, pinned):
    """RSS idle, then RSS with args.idle_connections idle keep-alive connections held by
    bench/idle_clients.py (another process), each after one request."""
    record = {"connections": args.idle_connections}
    time.sleep(0.5)                                    # let the start-up and the probe settle
    samples = []
    for _ in range(3):
        samples.append(server.rss_kib())
        time.sleep(0.2)
    record["rss_idle_kib"] = rss_idle = min(samples)
    argv = [sys.executable, os.path.join(BENCH, "idle_clients.py"), "--port", str(server.port),
            "-n", str(args.idle_connections), "--timeout", str(args.idle_timeout)]
    if pinned:
        argv = ["taskset", "-c", "1"] + argv
    record["command"] = " ".join(argv)
    client = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, bufsize=1)
    try:
        line = client.stdout.readline().strip()        # READY open=... failed=... seconds=...
        record["client_report"] = line
        fields = dict(re.findall(r"(\w+)=(\S+)", line.split(" error=")[0]))
        record["opened"] = int(fields.get("open", 0))
        record["failed"] = int(fields.get("failed", 0))
        record["open_seconds"] = float(fields.get("seconds", 0))
        if " error=" in line:
            record["client_error"] = line.split(" error=", 1)[1]
        if not line.startswith("READY"):
            record["error"] = "idle client failed: " + (client.stderr.read() or "")[-300:].strip()
            return record
        time.sleep(1.0)                                # let the server settle with them all open
        client.stdin.write("count\n")
        held_before = int(client.stdout.readline().split()[1])
        samples = []
        for _ in range(3):
            samples.append(server.rss_kib())
            time.sleep(0.2)
        client.stdin.write("count\n")
        held = int(client.stdout.readline().split()[1])
        record.update({"rss_held_kib": max(samples), "held_before": held_before, "held": held})
        if held > 0:
            record["per_conn_bytes"] = round((max(samples) - rss_idle) * 1024 / held, 1)
        notes = []
        if record["failed"]:
            notes.append(f"{record['failed']} of {args.idle_connections} connections failed"
                         + (f" ({record['client_error']})" if record.get("client_error") else ""))
        if held < record["opened"]:
            notes.append(f"the server closed {record['opened'] - held} idle connections")
        if held == 0:
            notes.append("no connection held")
        if notes:
            record["error"] = "; ".join(notes)
        client.stdin.write("quit\n")
        client.stdin.flush()
        client.wait(30)
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as error:
        record["error"] = f"idle client: {type(error).__name__}: {error}"
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    if not server.alive():
        record["error"] = f"server exited ({server.proc.returncode}) during the idle test"
    return record


# -- the run ------------------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=None, help="seconds per measured wrk run (default 10; --quick 2)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="seconds of discarded warm-up before each measured run (default 2; --quick 1)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds over all scenarios and servers (default 2; with --ab 4)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 s runs after a 1 s warm-up")
    parser.add_argument("--only", "--servers", dest="only", default=None,
                        help=f"comma-separated subset of the servers: {','.join(SERVERS)} (with --ab: of "
                             f"{','.join(ab.AB_SERVERS)}; default {','.join(ab.AB_DEFAULT_SERVERS)})")
    parser.add_argument("--scenarios", default=None,
                        help=f"comma-separated subset of: {','.join(SCENARIOS)} "
                             f"(with --ab: all but idle; default {','.join(ab.AB_DEFAULT_SCENARIOS)})")
    parser.add_argument("--ab", nargs=2, metavar=("REV_A", "REV_B"), default=None,
                        help="A/B mode: build two revisions of this repository (anything `git rev-parse` accepts, "
                             "or WORKTREE for this checkout's uncommitted tree) and run their fastcore servers "
                             "alternately, round by round; prints B/A ratios (see bench/README.md)")
    parser.add_argument("--build-dir", default=None, metavar="DIR",
                        help="with --ab: keep each commit's build in DIR and reuse it next time "
                             "(default: temporary builds, removed at the end)")
    parser.add_argument("--unpinned", action="store_true", help="no taskset: the scheduler places server and wrk")
    parser.add_argument("--threads", type=int, default=1, help="fastcore and fastcore.pure worker threads (default 1)")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c for all scenarios but c1000 (default 64)")
    parser.add_argument("--depth", type=int, default=16, help="pipelining depth (default 16)")
    parser.add_argument("--idle-connections", type=int, default=10000,
                        help="connections held open by the idle scenario (default 10000)")
    parser.add_argument("--idle-timeout", type=float, default=120.0,
                        help="seconds the idle client may take to open them (default 120)")
    parser.add_argument("--output", default=None, help="results JSON (default bench/results-<timestamp>.json)")
    parser.add_argument("--markdown", default=None,
                        help="Markdown file whose marked block gets the tables (default: bench/results-<timestamp>.md, "
                             "a new file, so the committed bench/RESULTS.md is kept; see --update-results)")
    parser.add_argument("--chart", default=None,
                        help="PNG chart (default: bench/results-<timestamp>.png)")
    parser.add_argument("--update-results", action="store_true",
                        help="write the tables and the chart into the committed bench/RESULTS.md and bench/RESULTS.png")
    parser.add_argument("--no-write", action="store_true", help="write only the JSON: no Markdown, no chart")
    parser.add_argument("--from-json", metavar="PATH", default=None,
                        help="measure nothing: write the tables and the chart from a results JSON of an earlier run "
                             "(default: beside it, with its name)")
    args = parser.parse_args(argv)
    args.command = shlex.join(["python", "-m", "bench"] + list(sys.argv[1:] if argv is None else argv))
    # Where the results go: a new set of files named by the time unless --update-results (or an
    # explicit --markdown / --chart) asks for others. A user's run never overwrites the committed
    # RESULTS.md and chart by surprise.
    args.stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    if args.from_json:
        base = os.path.splitext(os.path.abspath(args.from_json))[0]
    else:
        base = os.path.splitext(args.output)[0] if args.output else os.path.join(BENCH, f"results-{args.stamp}")
    if args.update_results:
        base = os.path.join(BENCH, "RESULTS")
    args.markdown = args.markdown or base + ".md"
    args.chart = args.chart or base + ".png"
    for key, value in (QUICK if args.quick else {"duration": 10, "warmup": 2}).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.rounds is None:
        args.rounds = ab.AB_DEFAULT_ROUNDS if args.ab else 2

    def pick(text, known, what):
        if text is None:
            return list(known)
        names = [ALIASES.get(n.strip(), n.strip()) for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            parser.error(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(known)})")
        return [n for n in known if n in names]        # the suite's order, whatever the order given

    if args.ab:
        if args.from_json:
            parser.error("--ab measures; --from-json reports an earlier run: give one of them")
        args.server_list = pick(args.only or ",".join(ab.AB_DEFAULT_SERVERS), ab.AB_SERVERS, "server for --ab")
        args.scenario_list = pick(args.scenarios or ",".join(ab.AB_DEFAULT_SCENARIOS),
                                  [s for s in SCENARIOS if s != "idle"], "scenario for --ab")
    else:
        args.server_list = pick(args.only, SERVERS, "server")
        args.scenario_list = pick(args.scenarios, list(SCENARIOS), "scenario")
    if args.duration <= 0 or args.rounds < 1 or args.idle_connections < 1:
        parser.error("--duration, --rounds and --idle-connections must be positive")
    return args


def check_tools(args, scenarios, pinned):
    """None when wrk, taskset, CPUs 0 and 1 and the open-file limit are there for `scenarios`; else
    the exit status, after saying on stderr what is missing."""
    if any(s != "idle" for s in scenarios) and shutil.which("wrk") is None:
        print(f"wrk not found: {WRK_HINT}", file=sys.stderr)
        return 2
    if pinned:
        if shutil.which("taskset") is None:
            print("taskset not found: install it with `apt-get install -y util-linux`, or run with --unpinned",
                  file=sys.stderr)
            return 2
        if not {0, 1} <= os.sched_getaffinity(0):
            print(f"pinning needs CPUs 0 and 1, this process may use {sorted(os.sched_getaffinity(0))}: "
                  "run with --unpinned", file=sys.stderr)
            return 2
    limit = launchers.raise_fd_limit(args.idle_connections + 1000)   # children inherit it
    if "idle" in scenarios and limit < args.idle_connections + 100:
        print(f"the open-file limit is {limit}, too low for {args.idle_connections} idle connections: "
              f"raise it (`ulimit -n {args.idle_connections + 1000}`) or pass a smaller --idle-connections",
              file=sys.stderr)
        return 2
    return None


def placement_text(pinned):
    return "server pinned to CPU 0, wrk and the idle client to CPU 1" if pinned else "unpinned"


def log_machine(info, pinned):
    log(f"# {info['cpu_model']}, nproc {info['nproc']}, kernel {info['kernel']}, Python {info['python']}; "
        f"{placement_text(pinned)}; load {loadavg()}")


class Progress:
    """The progress line before each run: its place in the plan, the time elapsed and the time left,
    from a running estimate of the seconds each run spends beyond warm-up + duration (start, probes,
    stop) and of an idle test's length."""

    def __init__(self, plan_scenarios, args):
        self.scenarios = plan_scenarios                # the scenario of each run of the plan, in order
        self.args = args
        self.overhead = {"wrk": [2.0], "idle": [10.0]}
        self.t_start = time.monotonic()

    def _estimate(self, scenario):
        kind = "idle" if scenario == "idle" else "wrk"
        recent = self.overhead[kind][-10:]
        return sum(recent) / len(recent) + (0 if kind == "idle" else self.args.warmup + self.args.duration)

    def elapsed(self):
        return time.monotonic() - self.t_start

    def announce(self, index, text):
        """Log "[index+1/N | elapsed, ~left] text" before run `index` of the plan."""
        left = sum(self._estimate(s) for s in self.scenarios[index:])
        log(f"[{index + 1}/{len(self.scenarios)} | {fmt_duration(self.elapsed())} elapsed, "
            f"~{fmt_duration(left)} left] {text}")

    def done(self, scenario, spent):
        if scenario == "idle":
            self.overhead["idle"].append(spent)
        else:
            self.overhead["wrk"].append(max(0.0, spent - self.args.warmup - self.args.duration))

    def what(self, scenario):
        """What a run of `scenario` does, for the progress line."""
        if scenario == "idle":
            return f"hold {self.args.idle_connections:,} idle connections"
        return f"{self.args.warmup:g} s warm-up + {self.args.duration:g} s"


class ServerNotes:
    """Unclean exits and server output, merged: one note per (server label, text) with the runs
    ("round/scenario") it happened in. The first occurrence is logged as it happens."""

    def __init__(self):
        self.where = {}                                # (label, text) -> ["round/scenario", ...]

    def add(self, label, text, where):
        runs = self.where.setdefault((label, text), [])
        if not runs:
            log(f"    {label}: {text}")
        runs.append(where)

    def lines(self):
        return [f"{label} (round/scenario {', '.join(runs)}): {text}" for (label, text), runs in self.where.items()]


def run_once(name, scenario, round_no, args, pinned, workdir, server_notes, fastcore_from=None, label=None):
    """One (round, scenario, server) run: start the server fresh, wait until it answers, sanity-check
    the scenario's route, measure (wrk, or the idle test), stop it. Returns the record. fastcore_from:
    the build directory whose fastcore the server imports (A/B mode); label: the server's name in
    notes (default `name`)."""
    record = {"round": round_no, "server": name, "scenario": scenario,
              "started_at": datetime.datetime.now().isoformat(timespec="seconds")}
    server = ServerProcess(name, args, pinned, workdir, fastcore_from=fastcore_from)
    record["server_command"] = " ".join(server.argv)
    finished = False
    try:
        try:
            server.wait_ready()
        except RuntimeError as error:
            record["error"] = "did not start: " + str(error).splitlines()[0][:300]
            log(f"    {record['error']}")
        else:
            record["port"] = server.port
            files = server.fastcore_files()
            if files:
                record["fastcore_file"], record["fastcore_core_file"] = files
            sanity = {}
            for probe_label, probe in scenario_probes(scenario, args.depth):
                ok, detail, head = http_probe(server.port, **probe)
                sanity[probe_label] = detail
                sanity.setdefault("response_head", head)
                if not ok:
                    record.setdefault("sanity_failed", []).append(f"{probe_label}: {detail}")
            record["sanity"] = sanity
            if record.get("sanity_failed"):
                log(f"    sanity check failed: {'; '.join(record['sanity_failed'])}")
            if scenario == "idle":
                record.update(measure_idle(server, args, pinned))
            else:
                record.update(measure_wrk(server, scenario, args, pinned))
            if record.get("sanity_failed"):
                record["error"] = "; ".join(filter(None, ["sanity check: " + "; ".join(record["sanity_failed"]),
                                                          record.get("error")]))
        record["loadavg_after"] = loadavg()
        finished = True
    finally:
        note = server.stop(timeout=10.0 if finished else 3.0)       # interrupted: do not wait long
    tail = "\n".join(line for line in server.log_tail().strip().splitlines()
                     if line.strip() and not line.startswith(("READY ", "FASTCORE\t")))
    if note or tail:
        record["server_output"] = tail[-3000:]
        text = (note or "exited cleanly") + (f"; server output: {tail[-400:]}" if tail else "")
        server_notes.add(label or name, text, f"{round_no}/{scenario}")
        if note and not record.get("error"):
            record["error"] = note
    return record


def summary_line(record):
    """The one-line result logged after a run."""
    if record["scenario"] == "idle":
        summary = (f"{report.fmt_bytes(record.get('per_conn_bytes'))} per connection "
                   f"({record.get('held', 0):,} held, RSS {report.fmt_mib(record.get('rss_idle_kib'))} -> "
                   f"{report.fmt_mib(record.get('rss_held_kib'))}, opened in {record.get('open_seconds', 0):.1f} s)")
    else:
        lat = record.get("latency_ms") or {}
        summary = (f"{report.fmt_num(record.get('rps'))} req/s, {report.fmt_num(record.get('req_per_cpu_s'))} "
                   f"req/CPU-s, server CPU {report.fmt_num(record.get('server_cpu_pct'))} %, "
                   f"p99 {report.fmt_lat(lat.get('99'))}, {report.fmt_num(record.get('errors'))} errors, "
                   f"RSS {report.fmt_mib(record.get('rss_max_kib'))}")
        if record.get("user_us_per_req") is not None:
            summary += f", us/req {record['user_us_per_req']:.2f} + {record['system_us_per_req']:.2f}"
    return "    " + summary + (f"  ERROR: {record['error'][:300]}" if record.get("error") else "")


def main(argv=None):
    args = parse_args(argv)
    if args.from_json:
        return report_from_json(args)
    if args.ab:
        return run_ab(args)
    servers, scenarios = args.server_list, args.scenario_list
    pinned = not args.unpinned
    status = check_tools(args, scenarios, pinned)
    if status is not None:
        return status

    skipped = {}
    for name in servers:
        why = server_available(name)
        if why:
            skipped[name] = why
            log(f"skipping {name}: {why}")
    servers = [s for s in servers if s not in skipped]
    if not servers:
        log("nothing to run")
        return 2

    started = datetime.datetime.now()
    info = machine_info()
    placement = placement_text(pinned)
    log_machine(info, pinned)
    for name in servers:
        for scenario in scenarios:
            why = not_applicable(name, scenario)
            if why:
                log(f"n/a: {name} {scenario}: {why}")

    plan = [(round_no, scenario, name) for round_no in range(1, args.rounds + 1)
            for scenario in scenarios for name in servers if not not_applicable(name, scenario)]
    records = [{"round": r, "server": name, "scenario": scenario, "na": not_applicable(name, scenario)}
               for r in range(1, args.rounds + 1) for scenario in scenarios for name in servers
               if not_applicable(name, scenario)]
    notes = []
    server_notes = ServerNotes()
    progress = Progress([scenario for _, scenario, _ in plan], args)
    workdir = tempfile.mkdtemp(prefix="fastcore-bench-")
    builds = {fastcore_build_id()}
    try:
        for index, (round_no, scenario, name) in enumerate(plan):
            progress.announce(index, f"round {round_no}/{args.rounds} · {scenario} · {name} "
                                     f"({progress.what(scenario)})")
            t_entry = time.monotonic()
            record = run_once(name, scenario, round_no, args, pinned, workdir, server_notes)
            records.append(record)
            log(summary_line(record))
            progress.done(scenario, time.monotonic() - t_entry)
            build = fastcore_build_id()
            if build not in builds:
                builds.add(build)
                msg = f"fastcore/_core*.so changed during the run: now {build}"
                notes.append(msg)
                log(msg)
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
        notes.append("interrupted before the end")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    elapsed = progress.elapsed()
    notes += server_notes.lines()
    output = args.output or os.path.join(BENCH, f"results-{args.stamp}.json")
    scenario_desc = scenario_descriptions(args)
    header = (f"wrk -t1, {args.duration:g} s per run after a {args.warmup:g} s warm-up, {args.rounds} round(s) "
              f"interleaved, fastcore threads={args.threads}, {placement}; {machine_text(info)}, "
              f"git {info['git_commit']}{' (dirty)' if info['git_dirty'] else ''}")
    run = {"started": started.isoformat(timespec="seconds"), "elapsed": fmt_duration(elapsed), "header": header,
           "quick": args.quick, "scenario_desc": scenario_desc, "idle_connections": args.idle_connections,
           "skipped": skipped, "notes": notes, "json": os.path.relpath(output, ROOT),
           "chart_subtitle": (f"{'pinned' if pinned else 'unpinned'}, {args.duration:g} s runs, "
                              f"{info['cpu_model']}, nproc {info['nproc']}" + (" (--quick)" if args.quick else ""))}
    descriptions = server_descriptions(args)
    write_json(output, {"started": run["started"], "elapsed_s": round(elapsed, 1),
                        "args": {k: v for k, v in vars(args).items()}, "pinned": pinned,
                        "servers": {s: descriptions[s] for s in servers}, "scenarios": scenario_desc,
                        "skipped": skipped, "machine": info, "notes": notes, "results": records,
                        "report": {"run": run, "servers": servers, "scenarios": scenarios,
                                   "descriptions": descriptions}})
    write_outputs(args, run, records, servers, scenarios, descriptions)
    print(f"results: {os.path.relpath(output)}")
    return 0


def run_ab(args):
    """--ab REV_A REV_B: build both revisions (bench/ab.py), then run each chosen fastcore server of
    both builds on each scenario, the A and B runs of a (scenario, server) back to back in ABBA order,
    round after round. Prints the B/A table (report.ab_markdown) and writes the JSON."""
    servers, scenarios = args.server_list, args.scenario_list
    pinned = not args.unpinned
    status = check_tools(args, scenarios, pinned)
    if status is not None:
        return status
    started = datetime.datetime.now()
    info = machine_info()
    log_machine(info, pinned)
    workdir = tempfile.mkdtemp(prefix="fastcore-bench-ab-")
    notes, records, server_notes = [], [], ServerNotes()
    t_start = time.monotonic()
    builds = {}
    try:
        build_dir = os.path.abspath(args.build_dir or os.path.join(workdir, "builds"))
        builds = ab.prepare_builds(args.ab, ROOT, build_dir, cache=bool(args.build_dir), log=log)
        for name in servers:
            for scenario in scenarios:
                why = not_applicable(name, scenario)
                if why:
                    log(f"n/a: {name} {scenario}: {why}")
        plan = ab.plan(args.rounds, scenarios, servers, skip=not_applicable)
        if args.rounds % 2:
            log(f"# {args.rounds} rounds: A runs first in one pair more than B (an even number balances ABBA)")
        progress = Progress([scenario for _, scenario, _, _ in plan], args)
        served = set()
        for index, (round_no, scenario, name, label) in enumerate(plan):
            build = builds[label]
            progress.announce(index, f"round {round_no}/{args.rounds} · {scenario} · {name} · {label} "
                                     f"({build['rev']}) ({progress.what(scenario)})")
            t_entry = time.monotonic()
            record = run_once(name, scenario, round_no, args, pinned, workdir, server_notes,
                              fastcore_from=build["dir"], label=f"{name} ({label})")
            record["build"] = label
            records.append(record)
            files = [f for f in (record.get("fastcore_file"), record.get("fastcore_core_file")) if f]
            if files and (label, name) not in served:  # once per build and server: what was served
                served.add((label, name))
                log(f"    {label} {name}: fastcore {files[0]}" + (f", _core {files[1]}" if len(files) > 1 else ""))
            if not all(ab.inside(f, build["dir"]) for f in files):   # servers.py refuses this already
                raise ab.BuildError(f"{name} ({label}) imported {', '.join(files)}, not from {build['dir']}")
            log(summary_line(record))
            progress.done(scenario, time.monotonic() - t_entry)
    except ab.BuildError as error:
        log(f"A/B: {error}")
        return 2
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
        notes.append("interrupted before the end")
        if not records:
            return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    elapsed = time.monotonic() - t_start
    notes += server_notes.lines()
    output = args.output or os.path.join(BENCH, f"results-ab-{started.strftime('%Y%m%d-%H%M%S')}.json")
    header = (f"{args.rounds} round(s), A and B back to back per (scenario, server), in ABBA order; wrk -t1, "
              f"{args.duration:g} s per run after a {args.warmup:g} s warm-up, fastcore threads={args.threads}, "
              f"{placement_text(pinned)}; {machine_text(info)}; harness: bench/ of git {info['git_commit']}"
              f"{' (dirty)' if info['git_dirty'] else ''}")
    run = {"started": started.isoformat(timespec="seconds"), "elapsed": fmt_duration(elapsed), "header": header,
           "command": args.command, "quick": args.quick, "scenario_desc": scenario_descriptions(args),
           "notes": notes, "json": os.path.relpath(output, ROOT)}
    kept = ("label", "rev", "commit", "describe", "worktree", "subject", "fastcore_file", "core_file",
            "build_seconds", "reused")
    build_info = {label: {k: b.get(k) for k in kept} for label, b in builds.items()}
    write_json(output, {"started": run["started"], "elapsed_s": round(elapsed, 1), "mode": "ab",
                        "args": {k: v for k, v in vars(args).items()}, "pinned": pinned, "builds": build_info,
                        "servers": {s: server_descriptions(args)[s] for s in servers},
                        "scenarios": {s: run["scenario_desc"][s] for s in scenarios}, "machine": info,
                        "notes": notes, "results": records,
                        "report": {"mode": "ab", "run": run, "servers": servers, "scenarios": scenarios,
                                   "builds": build_info}})
    print()
    print(report.ab_markdown(run, records, servers, scenarios, build_info))
    print()
    print(f"results: {os.path.relpath(output)}")
    return 0


def scenario_descriptions(args):
    return {s: SCENARIOS[s]["desc"].format(c=args.connections, depth=args.depth, idle=args.idle_connections)
            for s in SCENARIOS}


def server_descriptions(args):
    return {s: launchers.SERVERS[s][3].replace("threads=T", f"threads={args.threads}") for s in SERVERS}


def machine_text(info):
    return f"{info['cpu_model']}, nproc {info['nproc']}, kernel {info['kernel']}, Python {info['python']}"


def write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def write_outputs(args, run, records, servers, scenarios, descriptions):
    """The chart, the Markdown block on stdout and in RESULTS.md."""
    chart_name = None
    if not args.no_write and args.chart:
        why = report.write_chart(args.chart, run, records, servers, scenarios)
        if why:
            log(f"chart skipped: {why}")
        else:
            chart_name = os.path.relpath(args.chart, os.path.dirname(os.path.abspath(args.markdown)))
    block = report.results_markdown(run, records, servers, scenarios, descriptions, chart_name)
    print()
    print(block)
    print()
    if not args.no_write and args.markdown:
        report.write_results_md(args.markdown, block)
        print(f"tables: {os.path.relpath(args.markdown)}")
        if chart_name:
            print(f"chart: {os.path.relpath(args.chart)}")


def report_from_json(args):
    """--from-json: rewrite the tables and the chart from a saved run, without measuring."""
    try:
        with open(args.from_json) as f:
            saved = json.load(f)
        stored = saved["report"]
    except (OSError, ValueError, KeyError) as error:
        print(f"cannot report from {args.from_json}: {type(error).__name__}: {error} "
              "(a results file written by this version of the suite is needed)", file=sys.stderr)
        return 2
    stored["run"]["json"] = os.path.relpath(os.path.abspath(args.from_json), ROOT)
    if stored.get("mode") == "ab":                     # an A/B run: its table, on stdout only
        print(report.ab_markdown(stored["run"], saved["results"], stored["servers"], stored["scenarios"],
                                 stored["builds"]))
        return 0
    write_outputs(args, stored["run"], saved["results"], stored["servers"], stored["scenarios"],
                  stored["descriptions"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
