"""WebSocket benchmarks: echo round trips (picows client) and memory per idle WebSocket connection.

    python -m bench.ws_run [--servers a,b] [--scenarios ws64,ws16k] [--ws-connections 1,64]
                           [--rounds 2] [--duration 5] [--warmup 1] [--idle-connections 1000]
                           [--unpinned] [--fastcore-from DIR] [--output PATH]
    python -m bench.ws_run --from-json bench/results-ws-<timestamp>.json      (the table again)

Servers (bench/ws_servers.py): fastcore-asgi, pure-asgi, uvicorn-websockets, uvicorn-wsproto,
granian-asgi, all running the same ASGI echo app; a server that cannot run here is skipped with
the reason. Scenarios:
  * ws64, ws16k: echo of 64-byte / 16 KiB binary messages, one message in flight per connection,
    over each of --ws-connections (1 and 64): messages/s, p50/p99 round trip, server CPU per message;
  * idle: --idle-connections WebSockets held open after one echo each, without and with
    permessage-deflate offered: the server's RSS growth per connection.

Order and placement as in `python -m bench` (bench/README.md): every round runs every scenario on
every server; each run starts the server fresh, pinned to CPU 0 (taskset), waits for its `GET /`
answer, and runs the client (bench/ws_client.py or bench/ws_idle.py) in its own process pinned to
CPU 1. The server's CPU is read from /proc over the client's measured window (the client says when
it starts measuring). Results: a JSON file (bench/results-ws-<timestamp>.json; .gitignore has
bench/results-*) and a Markdown summary on stdout.
"""
import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
if __package__ in (None, ""):
    sys.path.insert(0, ROOT)

from bench import ws_servers  # noqa: E402
from bench.run import (ServerProcess, cpu_busy_seconds, free_port, loadavg, machine_info,  # noqa: E402
                       tree_cpu_split)
from bench.servers import _module_present  # noqa: E402

SIZES = {"ws64": 64, "ws16k": 16 * 1024}


class WsServerProcess(ServerProcess):
    """A bench/ws_servers.py server; waiting, RSS, CPU and stopping as bench/run.py's ServerProcess."""

    def __init__(self, kind, args, pinned, workdir):     # not super().__init__: that one starts servers.py
        self.kind = kind
        self.port = free_port()
        argv = [sys.executable, os.path.join(BENCH, "ws_servers.py"), kind, "--port", str(self.port),
                "--threads", str(args.threads), "--max-connections", str(args.idle_connections + 1000)]
        if args.fastcore_from:
            argv += ["--fastcore-from", args.fastcore_from]
        if pinned:
            argv = ["taskset", "-c", "0"] + argv
        self.argv = argv
        self.log_path = os.path.join(workdir, f"{kind}-{self.port}.log")
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self._pids = None


def server_available(name):
    if name.startswith(("fastcore", "pure")):
        # import it for real in a child, as the launcher will (a half-built engine fails here)
        probe = subprocess.run([sys.executable, "-c", "import sys; sys.argv=['x','--which-fastcore','pure'];"
                                "sys.path.insert(0, %r); import servers; sys.exit(servers.main())" % BENCH],
                               capture_output=True, text=True, cwd=ROOT, timeout=60)
        if probe.returncode:
            return "fastcore does not import: " + (probe.stderr.strip().splitlines() or ["?"])[-1]
        return None
    missing = [module for module in ws_servers.SERVERS[name][1] if not _module_present(module)]
    return f"{', '.join(missing)} not installed" if missing else None


def client_argv(script, pinned, *options):
    argv = [sys.executable, os.path.join(BENCH, script), *map(str, options)]
    return (["taskset", "-c", "1"] + argv) if pinned else argv


def measure_echo(server, size, connections, args, pinned):
    """One client run; the server's CPU over the client's measured window."""
    argv = client_argv("ws_client.py", pinned, "--port", server.port, "--path", "/ws", "-c", connections,
                       "--size", size, "--duration", args.duration, "--warmup", args.warmup)
    cpus = None if not pinned else {0, 1}
    busy_before, cpu_before = cpu_busy_seconds(cpus), tree_cpu_split(server.pids(refresh=True))
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=args.duration + args.warmup + 60)
    wall = time.monotonic() - started
    cpu_after, busy_after = tree_cpu_split(server.pids(refresh=True)), cpu_busy_seconds(cpus)
    record = {"command": " ".join(argv)}
    try:
        record.update(json.loads(done.stdout.strip().splitlines()[-1]))
    except (IndexError, ValueError):
        record["error"] = f"client exit {done.returncode}: {(done.stderr or done.stdout)[-300:].strip()}"
        return record
    # the client's window is its last `duration` seconds of `wall`; the server's CPU over the whole
    # client run is scaled to it (connect and warm-up run the same loop: close enough, and stated)
    server_cpu = sum(cpu_after) - sum(cpu_before)
    window = record.get("seconds") or args.duration
    record["server_cpu_s"] = round(server_cpu * window / wall, 3)
    record["server_cpu_pct"] = round(100 * server_cpu / wall, 1)
    record["other_cpu_pct"] = round(100 * max(0.0, (busy_after - busy_before) - server_cpu
                                              - record.get("client_cpu_s", 0) * wall / window) / wall, 1)
    if record.get("messages"):
        record["server_us_per_msg"] = round(record["server_cpu_s"] * 1e6 / record["messages"], 2)
    return record


def rss_samples(server, count=3, interval=0.2):
    samples = []
    for _ in range(count):
        samples.append(server.rss_kib())
        time.sleep(interval)
    return samples


def measure_idle(server, deflate, args, pinned):
    """RSS before, then with args.idle_connections WebSockets held (bench/ws_idle.py)."""
    record = {"connections": args.idle_connections, "deflate_offered": deflate}
    time.sleep(0.5)
    record["rss_idle_kib"] = rss_idle = min(rss_samples(server))
    options = ["--port", server.port, "--path", "/ws", "-n", args.idle_connections] + (["--deflate"] if deflate else [])
    argv = client_argv("ws_idle.py", pinned, *options)
    record["command"] = " ".join(argv)
    client = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, bufsize=1)
    try:
        line = client.stdout.readline().strip()
        record["client_report"] = line
        fields = dict(re.findall(r"(\w+)=(\S+)", line.split(" error=")[0]))
        record.update(opened=int(fields.get("open", 0)), failed=int(fields.get("failed", 0)),
                      deflate_agreed=int(fields.get("deflate", 0)))
        if not line.startswith("READY") or not record["opened"]:
            _, errors = client.communicate("quit\n", timeout=30)   # it exits, then its stderr ends
            record["error"] = "idle client: " + (line + " " + errors[-300:]).strip()
            return record
        time.sleep(1.0)
        client.stdin.write("count\n")
        held_before = int(client.stdout.readline().split()[1])
        rss_held = max(rss_samples(server))
        client.stdin.write("count\n")
        held = int(client.stdout.readline().split()[1])
        record.update(rss_held_kib=rss_held, held_before=held_before, held=held)
        if held:
            record["per_conn_bytes"] = round((rss_held - rss_idle) * 1024 / held, 1)
        client.stdin.write("quit\n")
        client.wait(30)
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as error:
        record["error"] = f"idle client: {type(error).__name__}: {error}"
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    return record


def run_one(name, scenario, parameter, args, pinned, workdir):
    server = WsServerProcess(name, args, pinned, workdir)
    record = {"server": name, "scenario": scenario, "parameter": parameter, "server_command": " ".join(server.argv),
              "loadavg_before": loadavg()}
    try:
        server.wait_ready()
        if scenario == "idle":
            record.update(measure_idle(server, parameter == "deflate", args, pinned))
        else:
            record.update(measure_echo(server, SIZES[scenario], parameter, args, pinned))
        if not server.alive():
            record["error"] = f"server exited ({server.proc.returncode})"
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        record["error"] = str(error)[:400]
    finally:
        note = server.stop()
        if note:
            record["stop_note"] = note
        tail = server.log_tail(600).strip()
        if tail:
            record["server_output"] = tail
    return record


def summary_line(record):
    if record.get("error"):
        return f"ERROR {record['error']}"
    if record["scenario"] == "idle":
        return (f"{record.get('per_conn_bytes', 0) / 1024:.2f} KiB per connection, held {record.get('held')}"
                f"/{record['connections']}, deflate agreed on {record.get('deflate_agreed')}")
    return (f"{record['messages_per_s']:,.0f} msg/s, p50 {record['p50_ms']} ms, p99 {record['p99_ms']} ms, "
            f"server {record.get('server_us_per_msg')} us/msg, server CPU {record.get('server_cpu_pct')} %, "
            f"other CPU {record.get('other_cpu_pct')} %, errors {record['errors']}")


def median(values):
    values = sorted(values)
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def markdown(records, servers):
    lines = ["| scenario | server | msg/s (median) | rounds | p50 ms | p99 ms | server us/msg | other CPU % (max) |",
             "|---|---|--:|---|--:|--:|--:|--:|"]
    echo_keys = sorted({(r["scenario"], r["parameter"]) for r in records if r["scenario"] != "idle"},
                       key=lambda key: (key[0], key[1]))
    for scenario, connections in echo_keys:
        for name in servers:
            runs = [r for r in records if (r["scenario"], r["parameter"], r["server"]) == (scenario, connections, name)]
            good = [r for r in runs if not r.get("error")]
            if not runs:
                continue
            if not good:
                lines.append(f"| {scenario} c{connections} | {name} | error | | | | | |")
                continue
            rates = [r["messages_per_s"] for r in good]
            lines.append(f"| {scenario} c{connections} | {name} | {median(rates):,.0f} | "
                         f"{' '.join(f'{x:,.0f}' for x in rates)} | {median([r['p50_ms'] for r in good]):.3f} | "
                         f"{median([r['p99_ms'] for r in good]):.3f} | "
                         f"{median([r.get('server_us_per_msg') or 0 for r in good]):.1f} | "
                         f"{max(r.get('other_cpu_pct') or 0 for r in good):.0f} |")
    idle = [r for r in records if r["scenario"] == "idle"]
    if idle:
        lines += ["", "| server | KiB per idle WebSocket | with permessage-deflate | held |", "|---|--:|--:|---|"]
        for name in servers:
            cells, held = [], []
            for mode in ("plain", "deflate"):
                good = [r for r in idle if r["server"] == name and r["parameter"] == mode and "per_conn_bytes" in r]
                cells.append(f"{median([r['per_conn_bytes'] for r in good]) / 1024:.2f}" if good else "n/a")
                held += [f"{r.get('held')}/{r['connections']}" + (f" ({r.get('deflate_agreed')} deflate)"
                                                                  if mode == "deflate" else "") for r in good]
            lines.append(f"| {name} | {cells[0]} | {cells[1]} | {', '.join(held)} |")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default=",".join(ws_servers.SERVERS))
    parser.add_argument("--scenarios", default="ws64,ws16k,idle")
    parser.add_argument("--ws-connections", default="1,64")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--idle-connections", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1, help="fastcore / fastcore.pure worker threads")
    parser.add_argument("--unpinned", action="store_true")
    parser.add_argument("--fastcore-from", default=None, metavar="DIR")
    parser.add_argument("--output", default=None)
    parser.add_argument("--from-json", default=None, metavar="PATH", help="measure nothing: print an earlier run's table")
    args = parser.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    for name in args.servers:
        if name not in ws_servers.SERVERS:
            parser.error(f"unknown server {name!r}: {', '.join(ws_servers.SERVERS)}")
    for name in args.scenarios:
        if name not in (*SIZES, "idle"):
            parser.error(f"unknown scenario {name!r}: {', '.join((*SIZES, 'idle'))}")
    args.ws_connections = [int(c) for c in args.ws_connections.split(",") if c]
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.from_json:
        with open(args.from_json) as f:
            earlier = json.load(f)
        print(markdown(earlier["runs"], list(earlier["servers"])))
        return 0
    pinned = not args.unpinned and (os.cpu_count() or 1) >= 2
    servers = []
    for name in args.servers:
        why = server_available(name)
        if why:
            print(f"skipping {name}: {why}", file=sys.stderr)
        else:
            servers.append(name)
    plan = [(scenario, parameter) for scenario in args.scenarios
            for parameter in (("plain", "deflate") if scenario == "idle" else args.ws_connections)]
    records, started = [], time.monotonic()
    total = args.rounds * len(plan) * len(servers)
    with tempfile.TemporaryDirectory(prefix="bench-ws-") as workdir:
        for round_no in range(1, args.rounds + 1):
            for scenario, parameter in plan:
                for name in servers:
                    print(f"[{len(records) + 1}/{total} | {time.monotonic() - started:.0f} s] round {round_no} · "
                          f"{scenario} {parameter} · {name}", file=sys.stderr, flush=True)
                    record = run_one(name, scenario, parameter, args, pinned, workdir)
                    record["round"] = round_no
                    records.append(record)
                    print("    " + summary_line(record), file=sys.stderr, flush=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    output = args.output or os.path.join(BENCH, f"results-ws-{stamp}.json")
    with open(output, "w") as f:
        json.dump({"options": vars(args), "pinned": pinned, "machine": machine_info(),
                   "servers": {name: ws_servers.SERVERS[name][2] for name in servers}, "runs": records}, f, indent=1)
    print(f"WebSocket bench, {args.rounds} round(s), {args.duration:g} s runs after {args.warmup:g} s warm-up, "
          f"{'server on CPU 0, client on CPU 1' if pinned else 'unpinned'}; JSON: {output}\n")
    print(markdown(records, servers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
