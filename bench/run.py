"""Benchmark fastcore against ThreadingHTTPServer and nginx with wrk ("Hello, World!", 13 bytes).

    python bench/run.py [--duration 10] [--threads 1] [--unpinned] [--only name,...]

For every round (default 2), for every server: start it (pinned to CPU 0 with taskset), wait until
its port accepts, then for every scenario (keep-alive, pipelined depth 16) run a discarded warm-up
and a measured wrk run (pinned to CPU 1), reading the server's CPU time from /proc before and after.
Prints a Markdown table and writes bench/results-<timestamp>.json. See bench/README.md.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
SERVERS = ["fastcore-static", "fastcore-handler", "stdlib", "nginx"]
SCENARIOS = ["keepalive", "pipelined"]
BODY = b"Hello, World!"
CLK_TCK = os.sysconf("SC_CLK_TCK")
INSTALL_HINT = "apt-get install -y wrk nginx"


def log(message):
    print(message, file=sys.stderr, flush=True)


# -- environment --------------------------------------------------------------------------------

def find_nginx():
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)


def fastcore_built():
    fc = os.path.join(ROOT, "fastcore")
    return any(name.startswith("_core") and name.endswith(".so") for name in os.listdir(fc))


def fastcore_build_id():
    """(name, mtime, size) of fastcore/_core*.so, to notice a rebuild during a run."""
    fc = os.path.join(ROOT, "fastcore")
    for name in sorted(os.listdir(fc)):
        if name.startswith("_core") and name.endswith(".so"):
            st = os.stat(os.path.join(fc, name))
            return f"{name} {datetime.datetime.fromtimestamp(st.st_mtime).isoformat(timespec='seconds')} {st.st_size}"
    return None


def command_output(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip()
    except (OSError, subprocess.SubprocessError):
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
    so = [n for n in os.listdir(os.path.join(ROOT, "fastcore")) if n.startswith("_core") and n.endswith(".so")]
    so_mtime = (datetime.datetime.fromtimestamp(os.path.getmtime(os.path.join(ROOT, "fastcore", so[0])))
                .isoformat(timespec="seconds") if so else None)
    return {
        "nproc": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "cpu_model": match.group(1).strip() if match else model,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "wrk": (command_output(["wrk", "-v"]) or "").splitlines()[0:1],
        "nginx": command_output([find_nginx() or "nginx", "-v"]),
        "git_commit": command_output(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(command_output(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])),
        "fastcore_so_mtime": so_mtime,
    }


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


# -- CPU accounting -----------------------------------------------------------------------------

def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # comm (field 2) may contain spaces and parentheses: split after the last ')'
    return data[data.rindex(")") + 2:].split()


def tree_cpu_seconds(root_pid):
    """utime+stime of root_pid and all its descendants, in seconds. A process's /proc/PID/stat
    already sums all of its threads; descendants cover launchers that run the server as a child
    (bench/servers.py nginx)."""
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
    ticks = 0
    for pid in pids:
        try:
            fields = _stat_fields(pid)
            ticks += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
        except (OSError, ValueError, IndexError):
            pass
    return ticks / CLK_TCK


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
    def __init__(self, kind, threads, pinned, logdir):
        self.kind = kind
        self.port = free_port()
        self.log_path = os.path.join(logdir, f"{kind}-{self.port}.log")
        argv = [sys.executable, os.path.join(BENCH, "servers.py"), kind, "--port", str(self.port),
                "--threads", str(threads)]
        if pinned:
            argv = ["taskset", "-c", "0"] + argv  # taskset execs: the pid is the server's
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def wait_ready(self, timeout=20.0):
        """Connect-poll the port until it accepts; fail early if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode} before listening:\n"
                                   + self.log_tail())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError(f"{self.kind} did not accept on port {self.port} within {timeout:.0f} s:\n"
                           + self.log_tail())

    def alive(self):
        return self.proc.poll() is None

    def cpu_seconds(self):
        return tree_cpu_seconds(self.proc.pid)

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
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        if note is None and rc not in (0, -signal.SIGTERM):
            note = f"exit status {rc} after SIGTERM"
        self.log_file.close()
        return note


def http_probe(port, depth=1, timeout=3.0):
    """Send `depth` pipelined GET / on one connection; return (ok, detail, first response head).
    ok means `depth` complete 200 responses with body "Hello, World!"."""
    request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode() * depth
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(request)
            data, answers, first_head = b"", 0, None
            deadline = time.monotonic() + timeout
            while answers < depth and time.monotonic() < deadline:
                # parse every complete response we have
                while True:
                    end = data.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head = data[:end].decode("latin-1")
                    match = re.search(r"^content-length:\s*(\d+)", head, re.I | re.M)
                    if not match:
                        return False, f"response without Content-Length: {head!r}", head
                    length = int(match.group(1))
                    if len(data) < end + 4 + length:
                        break
                    body = data[end + 4:end + 4 + length]
                    status = head.split(" ", 2)[1] if " " in head else "?"
                    if first_head is None:
                        first_head = head
                    if status != "200" or body != BODY:
                        return False, f"got status {status}, body {body!r}", first_head
                    answers += 1
                    data = data[end + 4 + length:]
                if answers >= depth:
                    break
                chunk = s.recv(65536)
                if not chunk:
                    return False, f"connection closed after {answers}/{depth} responses", first_head
                data += chunk
            if answers < depth:
                return False, f"timed out after {answers}/{depth} responses", first_head
            return True, f"{depth} x 200 OK", first_head
    except OSError as error:
        return False, f"{type(error).__name__}: {error}", None


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
    return result


def run_wrk(port, scenario, duration, connections, depth, pinned):
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if scenario == "pipelined":
        argv += ["-s", os.path.join(BENCH, "pipeline.lua")]
    argv.append(f"http://127.0.0.1:{port}/")
    if scenario == "pipelined":
        argv += ["--", str(depth)]
    if pinned:
        argv = ["taskset", "-c", "1"] + argv
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + duration + 60
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
            time.sleep(0.05)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    return " ".join(argv), proc.returncode, text, usage.ru_utime + usage.ru_stime


# -- the run ------------------------------------------------------------------------------------

def measure(server, scenario, args, pinned):
    """One warm-up and one measured wrk run against a started server."""
    record = {"server": server.kind, "scenario": scenario, "port": server.port,
              "started_at": datetime.datetime.now().isoformat(timespec="seconds")}
    _, warm_rc, warm_out, _ = run_wrk(server.port, scenario, args.warmup, args.connections, args.depth, pinned)
    if warm_rc != 0:
        record["warmup_error"] = warm_out.strip()[-500:]
    if not server.alive():
        record["error"] = f"server exited ({server.proc.returncode}) during warm-up"
        return record
    bench_cpus = {0, 1} if pinned else None
    busy_before, cpu_before, t0 = cpu_busy_seconds(bench_cpus), server.cpu_seconds(), time.monotonic()
    cmd, rc, out, client_cpu = run_wrk(server.port, scenario, args.duration, args.connections, args.depth, pinned)
    wall = time.monotonic() - t0
    cpu = server.cpu_seconds() - cpu_before
    other = max(0.0, cpu_busy_seconds(bench_cpus) - busy_before - cpu - client_cpu)
    record.update(parse_wrk(out))
    record.update({"command": cmd, "wrk_rc": rc, "wrk_output": out, "wall_s": round(wall, 3),
                   "server_cpu_s": round(cpu, 3), "client_cpu_s": round(client_cpu, 3),
                   "server_cpu_pct": round(100 * cpu / wall, 1) if wall else None,
                   "client_cpu_pct": round(100 * client_cpu / wall, 1) if wall else None,
                   "other_cpu_pct": round(100 * other / wall, 1) if wall else None})
    record["req_per_cpu_s"] = (round(record["requests"] / cpu) if record.get("requests") and cpu > 0 else None)
    if rc != 0:
        record["error"] = f"wrk exit status {rc}: {out.strip()[-300:]}"
    if not server.alive():
        record["error"] = f"server exited ({server.proc.returncode}) during the run"
    else:
        ok, detail, _ = http_probe(server.port)
        record["probe_after"] = detail
        if not ok:
            record["error"] = f"server not answering after the run: {detail}"
    return record


def fmt_num(x, digits=0):
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def fmt_lat(ms):
    if ms is None:
        return "n/a"
    if ms < 1:
        return f"{ms * 1000:.0f} us"
    if ms < 1000:
        return f"{ms:.2f} ms"
    return f"{ms / 1000:.2f} s"


def markdown_table(records):
    lines = ["| round | server | scenario | req/s | server CPU % | req / server CPU-s | p50 | p99 "
             "| non-2xx | socket errors c/r/w/t | wrk CPU % | other CPU % | notes |",
             "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for r in records:
        e = r.get("socket_errors") or {}
        errs = "/".join(str(e.get(k, 0)) for k in ("connect", "read", "write", "timeout")) if e else "-"
        lat = r.get("latency_ms") or {}
        lines.append("| {round} | {server} | {scenario} | {rps} | {scpu} | {eff} | {p50} | {p99} | {n2} | {errs} "
                     "| {ccpu} | {ocpu} | {notes} |".format(
                         round=r["round"], server=r["server"], scenario=r["scenario"],
                         rps=fmt_num(r.get("rps")), scpu=fmt_num(r.get("server_cpu_pct"), 1),
                         eff=fmt_num(r.get("req_per_cpu_s")), p50=fmt_lat(lat.get("50")),
                         p99=fmt_lat(lat.get("99")), n2=r.get("non_2xx", "-"), errs=errs,
                         ccpu=fmt_num(r.get("client_cpu_pct"), 1),
                         ocpu=fmt_num(r.get("other_cpu_pct"), 1),
                         notes=(r.get("error") or "").replace("|", "/").replace("\n", " ")[:120]))
    return "\n".join(lines)


def summary_table(records):
    """Per server and scenario: req/s of each round and the spread between them."""
    keys = []
    for r in records:
        if (r["server"], r["scenario"]) not in keys:
            keys.append((r["server"], r["scenario"]))
    rounds = sorted({r["round"] for r in records})
    head = "| server | scenario | " + " | ".join(f"req/s r{n}" for n in rounds) + " | spread | req / CPU-s (mean) |"
    lines = [head, "|---|---|" + "--:|" * len(rounds) + "--:|--:|"]
    for server, scenario in keys:
        rs = {r["round"]: r for r in records if (r["server"], r["scenario"]) == (server, scenario)}
        rps = [rs[n].get("rps") if n in rs else None for n in rounds]
        valid = [x for x in rps if x]
        spread = f"{100 * (max(valid) - min(valid)) / max(valid):.0f} %" if len(valid) > 1 else "-"
        effs = [rs[n].get("req_per_cpu_s") for n in rounds if n in rs and rs[n].get("req_per_cpu_s")]
        eff = sum(effs) / len(effs) if effs else None
        lines.append(f"| {server} | {scenario} | " + " | ".join(fmt_num(x) for x in rps)
                     + f" | {spread} | {fmt_num(eff)} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of discarded warm-up per scenario (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="fastcore worker threads (default 1)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--depth", type=int, default=16, help="pipelining depth (default 16)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over all servers (default 2)")
    parser.add_argument("--unpinned", action="store_true", help="do not pin server/wrk to CPU 0/1 with taskset")
    parser.add_argument("--only", default=None, help="comma-separated subset of: " + ",".join(SERVERS))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of: "
                        + ",".join(SCENARIOS))
    parser.add_argument("--output", default=None, help="results JSON path (default bench/results-<timestamp>.json)")
    args = parser.parse_args(argv)

    servers = SERVERS if args.only is None else [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in servers if s not in SERVERS]
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown += [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown server/scenario: {', '.join(unknown)} (servers: {', '.join(SERVERS)}; "
                     f"scenarios: {', '.join(SCENARIOS)})")

    if shutil.which("wrk") is None:
        print(f"wrk not found: install it with `{INSTALL_HINT}`", file=sys.stderr)
        return 2
    pinned = not args.unpinned
    if pinned:
        if shutil.which("taskset") is None:
            print("taskset not found (`apt-get install -y util-linux`); or run with --unpinned", file=sys.stderr)
            return 2
        if not {0, 1} <= os.sched_getaffinity(0):
            print(f"pinning needs CPUs 0 and 1, this process may use {sorted(os.sched_getaffinity(0))}; "
                  "run with --unpinned", file=sys.stderr)
            return 2
    skipped = {}
    if "nginx" in servers and find_nginx() is None:
        skipped["nginx"] = f"nginx not found: install it with `{INSTALL_HINT}`"
    if any(s.startswith("fastcore") for s in servers) and not fastcore_built():
        for s in servers:
            if s.startswith("fastcore"):
                skipped[s] = "fastcore/_core*.so not built: run `python setup.py build_ext --inplace`"
    for name, why in skipped.items():
        print(f"skipping {name}: {why}", file=sys.stderr)
    servers = [s for s in servers if s not in skipped]
    if not servers:
        print("nothing to run", file=sys.stderr)
        return 2

    started = datetime.datetime.now()
    info = machine_info()
    log(f"# {info['cpu_model']}, nproc {info['nproc']}, kernel {info['kernel']}, "
        f"{'pinned: server CPU 0, wrk CPU 1' if pinned else 'unpinned'}; load {loadavg()}")
    records, notes = [], []
    builds = [None]
    logdir = tempfile.mkdtemp(prefix="fastcore-bench-")
    current = None
    try:
        for round_no in range(1, args.rounds + 1):
            for kind in servers:
                build = fastcore_build_id() if kind.startswith("fastcore") else None
                if build is not None and build != builds[-1]:
                    if len(builds) > 1:
                        msg = f"fastcore/_core*.so changed during the run: now {build}"
                        notes.append(msg)
                        log(msg)
                    builds.append(build)
                current = server = ServerProcess(kind, args.threads, pinned, logdir)
                try:
                    server.wait_ready()
                except RuntimeError as error:
                    server.stop()
                    log(f"round {round_no} {kind}: {error}")
                    for scenario in scenarios:
                        records.append({"round": round_no, "server": kind, "scenario": scenario,
                                        "error": str(error).splitlines()[0]})
                    continue
                ok, detail, head = http_probe(server.port)
                ok16, detail16, _ = http_probe(server.port, depth=args.depth) if ok else (False, "skipped", None)
                sanity = {"single": detail, "pipelined": detail16, "response_head": head}
                if not (ok and ok16):
                    log(f"round {round_no} {kind}: sanity check failed: {detail}; pipelined: {detail16}")
                for scenario in scenarios:
                    if not server.alive():
                        records.append({"round": round_no, "server": kind, "scenario": scenario,
                                        "error": f"server exited ({server.proc.returncode}) earlier"})
                        continue
                    log(f"round {round_no}: {kind} {scenario} (warm-up {args.warmup} s + {args.duration} s) ...")
                    record = measure(server, scenario, args, pinned)
                    record["round"] = round_no
                    record["sanity"] = sanity
                    if build is not None:
                        record["fastcore_build"] = build
                    record["loadavg_after"] = loadavg()
                    records.append(record)
                    log(f"    {fmt_num(record.get('rps'))} req/s, server CPU {record.get('server_cpu_pct')} %, "
                        f"{fmt_num(record.get('req_per_cpu_s'))} req/CPU-s"
                        + (f"  ERROR: {record['error']}" if record.get("error") else ""))
                note = server.stop()
                current = None
                tail = server.log_tail().strip()
                tail = "\n".join(line for line in tail.splitlines() if not line.startswith("READY "))
                if note or tail:
                    msg = f"round {round_no} {kind}: " + (note or "exited cleanly") + \
                        (f"; server output:\n{tail}" if tail else "")
                    notes.append(msg)
                    log(msg)
        if builds[-1] is not None and fastcore_build_id() != builds[-1]:
            msg = f"fastcore/_core*.so changed during the run: now {fastcore_build_id()}"
            notes.append(msg)
            log(msg)
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        if current is not None:
            current.stop(timeout=3)
        shutil.rmtree(logdir, ignore_errors=True)

    for r in records:  # rows in a fixed order: round, then the order the servers ran in
        r.setdefault("round", 0)
    table = markdown_table(records)
    summary = summary_table(records) if args.rounds > 1 else ""
    header = (f"wrk -t1 -c{args.connections}, {args.duration} s per run (after {args.warmup} s warm-up), "
              f"pipelined depth {args.depth}, fastcore threads={args.threads}, "
              f"{'server pinned to CPU 0, wrk to CPU 1' if pinned else 'unpinned'}; "
              f"{info['cpu_model']}, nproc {info['nproc']}, kernel {info['kernel']}, "
              f"git {info['git_commit']}{' (dirty)' if info['git_dirty'] else ''}")
    print()
    print(header)
    print()
    print(table)
    if summary:
        print()
        print(summary)
    for note in notes:
        print()
        print("> " + note.replace("\n", "\n> "))

    output = args.output or os.path.join(BENCH, f"results-{started.strftime('%Y%m%d-%H%M%S')}.json")
    with open(output, "w") as f:
        json.dump({"started": started.isoformat(timespec="seconds"), "args": vars(args), "pinned": pinned,
                   "skipped": skipped, "machine": info, "notes": notes, "results": records}, f, indent=1)
    print(f"\nresults: {os.path.relpath(output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
