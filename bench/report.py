"""Turn bench/run.py's records into Markdown (bench/RESULTS.md, between markers) and a PNG chart.

A record is one run: {"round", "server", "scenario", ...}. A wrk run has "rps", "req_per_cpu_s",
"latency_ms" {"50", "75", "90", "99"}, "errors" (non-2xx + socket errors), "rss_max_kib", ...;
the idle run has "rss_idle_kib", "rss_held_kib", "held", "per_conn_bytes"; a run that was not
applicable has "na"; one that failed has "error".
"""
import os
import statistics

BEGIN = "<!-- BEGIN bench results: written by `python -m bench`; everything outside these markers is kept -->"
END = "<!-- END bench results -->"

FASTCORE = ("fastcore-static", "fastcore-native", "fastcore-wsgi")
PURE = ("pure-native", "pure-wsgi")


# -- formatting -----------------------------------------------------------------------------------

def fmt_num(x, digits=0):
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def fmt_k(x):
    """Short req/s for tables and bars: 1.23M, 456k, 7.8k, 950."""
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e5:
        return f"{x / 1e3:.0f}k"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def fmt_lat(ms):
    if ms is None:
        return "n/a"
    if ms < 1:
        return f"{ms * 1000:.0f} us"
    if ms < 1000:
        return f"{ms:.2f} ms"
    return f"{ms / 1000:.2f} s"


def fmt_mib(kib):
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def fmt_bytes(n):
    if n is None:
        return "-"
    if abs(n) >= 1024 * 1024:
        return f"{n / 1048576:.2f} MiB"
    if abs(n) >= 1024:
        return f"{n / 1024:.2f} KiB"
    return f"{n:.0f} B"


def _cell(text):
    return str(text).replace("|", "/").replace("\n", " ")


# -- aggregation over rounds -------------------------------------------------------------------------

def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def spread(values):
    """(max - min) / max of the values present, or None with fewer than two: the suite's spread."""
    values = [v for v in values if v is not None]
    if len(values) < 2 or max(values) <= 0:
        return None
    return (max(values) - min(values)) / max(values)


def aggregate(records):
    """{(server, scenario): summary}: means over the rounds that produced a number, per-round req/s,
    spread ((max - min) / max of req/s), errors summed, notes collected."""
    groups = {}
    for r in records:
        groups.setdefault((r["server"], r["scenario"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        ok = [r for r in rs if not r.get("na") and r.get("rps") is not None]
        idle = [r for r in rs if r.get("per_conn_bytes") is not None]
        rps = [r.get("rps") for r in sorted(rs, key=lambda r: r["round"])]
        valid = [x for x in rps if x]
        summary = {
            "na": next((r["na"] for r in rs if r.get("na")), None),
            "rounds": len(rs),
            "rps_rounds": rps,
            "rps": _mean([r["rps"] for r in ok]),
            "spread": spread(valid),
            "req_per_cpu_s": _mean([r.get("req_per_cpu_s") for r in ok]),
            "user_us_per_req": _mean([r.get("user_us_per_req") for r in ok]),
            "system_us_per_req": _mean([r.get("system_us_per_req") for r in ok]),
            "p50": _mean([(r.get("latency_ms") or {}).get("50") for r in ok]),
            "p99": _mean([(r.get("latency_ms") or {}).get("99") for r in ok]),
            "errors": sum(r.get("errors") or 0 for r in ok) if ok else None,
            "rss_max_kib": _mean([r.get("rss_max_kib") for r in ok]),
            "server_cpu_pct": _mean([r.get("server_cpu_pct") for r in ok]),
            "client_cpu_pct": _mean([r.get("client_cpu_pct") for r in ok]),
            "other_cpu_pct": _mean([r.get("other_cpu_pct") for r in ok]),
            "per_conn_bytes": _mean([r["per_conn_bytes"] for r in idle]),
            "rss_idle_kib": _mean([r.get("rss_idle_kib") for r in idle]),
            "rss_held_kib": _mean([r.get("rss_held_kib") for r in idle]),
            "held": min((r.get("held") or 0 for r in idle), default=None),
            "open_seconds": _mean([r.get("open_seconds") for r in idle]),
            "failed": not ok and not idle and not any(r.get("na") for r in rs),
            "notes": sorted({r["error"] for r in rs if r.get("error")}),
        }
        out[key] = summary
    return out


# -- tables -------------------------------------------------------------------------------------------

def overview_table(agg, servers, scenarios):
    """Servers x scenarios: mean req/s (idle: memory per connection)."""
    head = "| server | " + " | ".join(("KiB / idle conn" if s == "idle" else s) for s in scenarios) + " |"
    lines = [head, "|---|" + "--:|" * len(scenarios)]
    for server in servers:
        cells = []
        for scenario in scenarios:
            a = agg.get((server, scenario))
            if a is None:
                cells.append("")
            elif a["na"]:
                cells.append("n/a")
            elif scenario == "idle":
                cells.append(f"{a['per_conn_bytes'] / 1024:.2f}" if a["per_conn_bytes"] is not None else "failed")
            elif a["rps"] is None:
                cells.append("failed")
            else:
                cells.append(fmt_k(a["rps"]) + (" (!)" if a["errors"] else ""))
        lines.append(f"| {server} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fmt_cost(a):
    """Server CPU per request as 'user + kernel us'."""
    user, system = a.get("user_us_per_req"), a.get("system_us_per_req")
    if user is None or system is None:
        return "-"
    return f"{user:.2f} + {system:.2f}"


def scenario_table(agg, servers, scenario):
    lines = ["| server | req/s | spread | req / server CPU-s | server us / req (user + kernel) | p50 | p99 | "
             "errors | server RSS | server CPU % | wrk CPU % | other CPU % | notes |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for server in servers:
        a = agg.get((server, scenario))
        if a is None:
            continue
        if a["na"]:
            lines.append(f"| {server} | n/a | | | | | | | | | | | {_cell(a['na'])} |")
            continue
        spread = f"{100 * a['spread']:.0f} %" if a["spread"] is not None else "-"
        lines.append("| {s} | {rps} | {spread} | {eff} | {cost} | {p50} | {p99} | {err} | {rss} | {scpu} | {ccpu} | "
                     "{ocpu} | {notes} |".format(
                         s=server, rps=fmt_num(a["rps"]), spread=spread, eff=fmt_num(a["req_per_cpu_s"]),
                         cost=fmt_cost(a),
                         p50=fmt_lat(a["p50"]) if a["rps"] else "-", p99=fmt_lat(a["p99"]) if a["rps"] else "-",
                         err=fmt_num(a["errors"]), rss=fmt_mib(a["rss_max_kib"]),
                         scpu=fmt_num(a["server_cpu_pct"], 1), ccpu=fmt_num(a["client_cpu_pct"], 1),
                         ocpu=fmt_num(a["other_cpu_pct"], 1), notes=_cell("; ".join(a["notes"]))[:200]))
    return "\n".join(lines)


def idle_table(agg, servers, connections):
    lines = [f"| server | RSS idle | RSS with {connections:,} idle connections | connections held | "
             "per connection | time to open them | notes |",
             "|---|--:|--:|--:|--:|--:|---|"]
    for server in servers:
        a = agg.get((server, "idle"))
        if a is None:
            continue
        if a["na"]:
            lines.append(f"| {server} | n/a | | | | | {_cell(a['na'])} |")
            continue
        lines.append("| {s} | {idle} | {held_rss} | {held} | {per} | {secs} | {notes} |".format(
            s=server, idle=fmt_mib(a["rss_idle_kib"]), held_rss=fmt_mib(a["rss_held_kib"]),
            held=fmt_num(a["held"]), per=fmt_bytes(a["per_conn_bytes"]),
            secs=f"{a['open_seconds']:.1f} s" if a["open_seconds"] is not None else "-",
            notes=_cell("; ".join(a["notes"]))[:200]))
    return "\n".join(lines)


def runs_table(records):
    """Every run, in the order it ran."""
    lines = ["| round | scenario | server | req/s | req / server CPU-s | server us / req (user + kernel) | p50 | p99 | "
             "errors | server RSS | server CPU % | wrk CPU % | other CPU % | notes |",
             "|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for r in records:
        if r.get("na"):
            continue
        if r["scenario"] == "idle":
            text = f"{fmt_bytes(r.get('per_conn_bytes'))} per idle connection, {r.get('held', 0):,} held"
            if r.get("error"):
                text += "; " + r["error"]
            lines.append(f"| {r['round']} | idle | {r['server']} | | | | | | | {fmt_mib(r.get('rss_held_kib'))} "
                         "| | | | "
                         + _cell(text)[:200] + " |")
            continue
        lat = r.get("latency_ms") or {}
        lines.append("| {round} | {sc} | {s} | {rps} | {eff} | {cost} | {p50} | {p99} | {err} | {rss} | {scpu} | "
                     "{ccpu} | {ocpu} | {notes} |".format(
                         round=r["round"], sc=r["scenario"], s=r["server"], rps=fmt_num(r.get("rps")),
                         eff=fmt_num(r.get("req_per_cpu_s")), cost=fmt_cost(r), p50=fmt_lat(lat.get("50")),
                         p99=fmt_lat(lat.get("99")),
                         err=fmt_num(r.get("errors")), rss=fmt_mib(r.get("rss_max_kib")),
                         scpu=fmt_num(r.get("server_cpu_pct"), 1), ccpu=fmt_num(r.get("client_cpu_pct"), 1),
                         ocpu=fmt_num(r.get("other_cpu_pct"), 1), notes=_cell(r.get("error") or "")[:160]))
    return "\n".join(lines)


# -- targets: what fastcore aims for, each against the server that sets the bar ----------------------------------------------------------------------

def _ratio_target(agg, label, source, ours, theirs, scenario, factor):
    a, b = agg.get((ours, scenario)), agg.get((theirs, scenario))
    x = a and a["rps"]
    y = b and b["rps"]
    goal = f">= {factor:g} x {theirs}" if factor != 1 else f">= {theirs}"
    if not x or not y:
        missing = ours if not x else theirs
        return [label, source, fmt_num(x), fmt_num(y), "-", goal, f"not measured ({missing})"]
    ratio = x / y
    ea, eb = a.get("req_per_cpu_s"), b.get("req_per_cpu_s")
    cpu = f" (per CPU-s: {ea / eb:.2f} x)" if ea and eb else ""
    return [label, source, fmt_num(x), fmt_num(y), f"{ratio:.2f} x{cpu}", goal, "yes" if ratio >= factor else "no"]


def _best_of_target(agg, label, source, ours, others, scenario):
    """Our req/s against the best of `others` in the same run (>= 1 x the best)."""
    a = agg.get((ours, scenario))
    x = a and a["rps"]
    measured = [(agg[(name, scenario)]["rps"], name) for name in others
                if agg.get((name, scenario)) and agg[(name, scenario)]["rps"]]
    goal = ">= the best of " + " and ".join(others)
    if not x or len(measured) < len(others):
        return [label, source, fmt_num(x), "-", "-", goal, "not measured"]
    y, best = max(measured)
    return [label, source, fmt_num(x), f"{fmt_num(y)} ({best})", f"{x / y:.2f} x", goal, "yes" if x >= y else "no"]


def targets_table(agg):
    rows = [
        _ratio_target(agg, "static route, keep-alive", "C answers as fast as nginx", "fastcore-static", "nginx", "keepalive", 1),
        _ratio_target(agg, "static route, pipelined", "C answers, pipelined", "fastcore-static", "nginx", "pipelined", 4),
        _ratio_target(agg, "native handler, keep-alive", "a Python handler near nginx", "fastcore-native", "nginx", "keepalive", 0.9),
        _ratio_target(agg, "WSGI, keep-alive", "WSGI as fast as bjoern (C)", "fastcore-wsgi", "bjoern", "keepalive", 1),
        _ratio_target(agg, "WSGI, pipelined", "WSGI pipelined vs granian (Rust)", "fastcore-wsgi", "granian", "pipelined", 4),
        _ratio_target(agg, "native: compiled vs pure, keep-alive", "what compiling the core buys", "fastcore-native", "pure-native",
                      "keepalive", 5),
        _ratio_target(agg, "WSGI: compiled vs pure, keep-alive", "what compiling the core buys", "fastcore-wsgi", "pure-wsgi",
                      "keepalive", 5),
        _ratio_target(agg, "ASGI, keep-alive", "ASGI vs uvicorn (httptools, uvloop)", "fastcore-asgi", "uvicorn", "keepalive", 2),
        _ratio_target(agg, "ASGI, keep-alive (granian)", "ASGI vs granian (Rust)", "fastcore-asgi", "granian-asgi", "keepalive",
                      1.2),
        _ratio_target(agg, "ASGI, pipelined", "ASGI pipelined vs uvicorn", "fastcore-asgi", "uvicorn", "pipelined", 5),
        _ratio_target(agg, "ASGI, pipelined (granian)", "ASGI pipelined vs granian", "fastcore-asgi", "granian-asgi",
                      "pipelined", 2),
        _best_of_target(agg, "FastAPI app", "the server is not what a user notices", "fastcore-asgi",
                        ("uvicorn", "granian-asgi"), "fastapi"),
    ]
    for server in ("fastcore-native", "fastcore-wsgi"):
        a, b = agg.get((server, "c1000")), agg.get(("bjoern", "c1000"))
        x, y = a and a["rps"] and a["p99"], b and b["rps"] and b["p99"]
        label = f"p99 at 1000 connections ({server.split('-')[1]})"
        if x is None or y is None:
            rows.append([label, "tail latency, many clients", fmt_lat(x) if x else "-", fmt_lat(y) if y else "-", "-", "<= bjoern",
                         "not measured"])
        else:
            rows.append([label, "tail latency, many clients", fmt_lat(x), fmt_lat(y), f"{x / y:.2f} x", "<= bjoern",
                         "yes" if x <= y else "no"])
    for server in FASTCORE + ("fastcore-asgi",):
        a = agg.get((server, "idle"))
        per = a and a["per_conn_bytes"]
        label = f"memory per idle keep-alive connection ({server})"
        if per is None:
            rows.append([label, "what an idle client costs", "-", "", "", "<= 4 KiB", "not measured"])
        else:
            rows.append([label, "what an idle client costs", fmt_bytes(per), "", "", "<= 4 KiB", "yes" if per <= 4096 else "no"])
    lines = ["| target | what it shows | fastcore | reference | ratio | goal | met |", "|---|---|--:|--:|--:|---|---|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def kernel_floor_lines(agg, scenario="keepalive"):
    """Where a request's server CPU time goes, compiled against pure, and the req/s ratio the
    kernel's share leaves possible. With one request in flight per connection every server makes
    the same recv and send per request, and the kernel's TCP work inside them (loopback delivery to
    wrk included) is the same whatever the server is written in. So even a compiled server that
    spent no user time at all could be at most (pure's user + kernel) / (compiled kernel) times
    faster. Returns Markdown bullets, or [] when the runs lack the CPU split."""
    lines = []
    for ours, theirs in (("fastcore-native", "pure-native"), ("fastcore-wsgi", "pure-wsgi")):
        a, b = agg.get((ours, scenario)), agg.get((theirs, scenario))
        if not (a and b and a["rps"] and b["rps"]):
            continue
        if None in (a["user_us_per_req"], a["system_us_per_req"], b["user_us_per_req"], b["system_us_per_req"]):
            continue
        pure_total = b["user_us_per_req"] + b["system_us_per_req"]
        user_ratio = b["user_us_per_req"] / a["user_us_per_req"] if a["user_us_per_req"] > 0 else None
        ceiling = pure_total / a["system_us_per_req"] if a["system_us_per_req"] > 0 else None
        lines.append(
            f"- {ours} vs {theirs}: user-space CPU per request {a['user_us_per_req']:.2f} vs "
            f"{b['user_us_per_req']:.2f} us ({fmt_num(user_ratio, 1)} x less); kernel {a['system_us_per_req']:.2f} vs "
            f"{b['system_us_per_req']:.2f} us. With no user-space time at all, {ours} could be at most "
            f"{pure_total:.2f} / {a['system_us_per_req']:.2f} = {fmt_num(ceiling, 2)} x {theirs} in req/s per "
            f"server CPU-second; measured {a['rps'] / b['rps']:.2f} x in req/s.")
    a, b = agg.get(("nginx", scenario)), agg.get(("pure-native", scenario))
    if a and b and a["rps"] and b["rps"]:
        lines.append(f"- nginx, the native anchor, reached {a['rps'] / b['rps']:.2f} x pure-native in the same run "
                     f"(server us / req, user + kernel: {fmt_cost(a)}).")
    return lines


# -- the Markdown block and RESULTS.md ------------------------------------------------------------------

def results_markdown(run, records, servers, scenarios, descriptions, chart_name=None):
    """The generated block: header, chart, overview, targets, one table per scenario, notes."""
    agg = aggregate(records)
    wrk_scenarios = [s for s in scenarios if s != "idle"]
    out = [f"Run of {run['started']} ({run['elapsed']}): {run['header']}", ""]
    if run.get("quick"):
        out += ["**`--quick` smoke test: runs of a few seconds, numbers are only indicative.**", ""]
    if chart_name:
        out += [f"![req/s per scenario and server]({chart_name})", ""]
    out += ["### Overview: req/s (mean of rounds; `(!)` = errors, see below)", "",
            overview_table(agg, servers, scenarios), ""]
    out += ["### Targets", "", "Ratios of mean req/s, placement as above; `per CPU-s` compares requests per "
            "server CPU-second, which does not depend on whether wrk was the bottleneck.", "",
            targets_table(agg), ""]
    floor = kernel_floor_lines(agg)
    if floor:
        out += ["Compiled vs pure at keep-alive: where the server's CPU time per request goes (user-space and "
                "kernel, from /proc), and the ratio the kernel's share allows:", ""] + floor + [""]
    for scenario in wrk_scenarios:
        out += [f"### {scenario}: {run['scenario_desc'][scenario]}", "", scenario_table(agg, servers, scenario), ""]
    if "idle" in scenarios:
        out += [f"### idle: {run['scenario_desc']['idle']}", "", idle_table(agg, servers, run["idle_connections"]), ""]
    out += ["### Servers", "", "| server | configuration |", "|---|---|"]
    out += [f"| {s} | {_cell(descriptions[s])} |" for s in servers]
    out += [""]
    if run.get("skipped"):
        out += ["Skipped: " + "; ".join(f"{k} ({v})" for k, v in run["skipped"].items()), ""]
    if run.get("notes"):
        out += ["### Notes", ""] + ["- " + _cell(n)[:600] for n in run["notes"]] + [""]
    out += ["<details><summary>Every run</summary>", "", runs_table(records), "", "</details>", "",
            f"Raw data: `{run['json']}` (not committed: `bench/results-*.json` is git-ignored)."]
    return "\n".join(out)


# -- A/B: two builds of fastcore, run alternately (python -m bench --ab) ----------------------------------

def _server_us_per_req(record):
    user, system = record.get("user_us_per_req"), record.get("system_us_per_req")
    return None if user is None or system is None else user + system


# (name, title, format of a value, the value in a record): the figures an A/B compares. The total CPU
# per request is exact (the kernel counts run time in ns); its split into user and kernel time is
# sampled at each timer tick, so each part is noisier than the total (bench/README.md, "A/B").
AB_METRICS = (("rps", "req/s", lambda x: fmt_num(x), lambda r: r.get("rps")),
              ("server_us_per_req", "server us / req", lambda x: f"{x:.2f}", _server_us_per_req),
              ("user_us_per_req", "user us / req", lambda x: f"{x:.2f}", lambda r: r.get("user_us_per_req")),
              ("system_us_per_req", "kernel us / req", lambda x: f"{x:.2f}", lambda r: r.get("system_us_per_req")))


def ab_summary(records):
    """{(scenario, server): summary} of an A/B run's records (each with "build" "A" or "B"). A summary
    holds, per build, each metric's values by round ({round: value}), their median and spread; per
    metric, "ratio" (median B / median A) and "round_ratios" (B / A of each round where both ran:
    the two runs of a round are back to back, so this ratio has the machine's slow drift taken out);
    "other_cpu_pct" (the highest of the runs: how disturbed the pair was), "errors" and "notes"."""
    groups = {}
    for r in records:
        if r.get("na") or r.get("build") not in ("A", "B"):
            continue
        groups.setdefault((r["scenario"], r["server"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        ok = [r for r in rs if r.get("rps") is not None]
        summary = {"errors": sum(r.get("errors") or 0 for r in ok),
                   "other_cpu_pct": max((r["other_cpu_pct"] for r in ok if r.get("other_cpu_pct") is not None),
                                        default=None),
                   "notes": sorted({f"{r['build']}: {r['error']}" for r in rs if r.get("error")})}
        for label in ("A", "B"):
            mine = [r for r in ok if r["build"] == label]
            summary[label] = {}
            for metric, _, _, value in AB_METRICS:
                by_round = {r["round"]: value(r) for r in mine if value(r) is not None}
                values = list(by_round.values())
                summary[label][metric] = {"rounds": by_round,
                                          "median": statistics.median(values) if values else None,
                                          "spread": spread(values)}
        for metric, *_ in AB_METRICS:
            a, b = summary["A"][metric], summary["B"][metric]
            summary[metric] = {
                "ratio": b["median"] / a["median"] if a["median"] and b["median"] is not None else None,
                "round_ratios": [b["rounds"][n] / a["rounds"][n] for n in sorted(a["rounds"])
                                 if n in b["rounds"] and a["rounds"][n]]}
        out[key] = summary
    return out


def fmt_median(entry, fmt):
    """'152,345 (2 %)': median over the rounds, and the spread in parentheses."""
    if entry["median"] is None:
        return "-"
    return fmt(entry["median"]) + (f" ({100 * entry['spread']:.0f} %)" if entry["spread"] is not None else "")


def fmt_round_ratios(round_ratios):
    """'0.991 1.012 1.004 0.998': B/A of each round, in round order."""
    return " ".join(f"{x:.3f}" for x in round_ratios) or "-"


def ab_table(summary, scenarios, servers):
    """Four rows per (scenario, server), one per figure: A, B, B/A of the medians and B/A of each
    round; the pair's disturbance and notes on its first row."""
    lines = ["| scenario | server | figure | A: median (spread) | B: median (spread) | B/A | B/A by round | "
             "other CPU % (max) | notes |",
             "|---|---|---|--:|--:|--:|--:|--:|---|"]
    for scenario in scenarios:
        for server in servers:
            a = summary.get((scenario, server))
            if a is None:
                continue
            notes = ([f"{a['errors']:,} wrk errors"] if a["errors"] else []) + a["notes"]
            for index, (metric, title, fmt, _) in enumerate(AB_METRICS):
                ratio = a[metric]["ratio"]
                cells = [scenario, server] if index == 0 else ["", ""]
                cells += [title, fmt_median(a["A"][metric], fmt), fmt_median(a["B"][metric], fmt),
                          "-" if ratio is None else f"{ratio:.3f}", fmt_round_ratios(a[metric]["round_ratios"])]
                cells += [fmt_num(a["other_cpu_pct"]), _cell("; ".join(notes))[:200]] if index == 0 else ["", ""]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ab_markdown(run, records, servers, scenarios, builds):
    """The A/B block, ready to paste into RESULTS.md: what A and B are, the command, the table, how
    to read it, notes, and every run."""
    out = [f"A/B run of {run['started']} ({run['elapsed']}):", ""]
    for label in ("A", "B"):
        b = builds.get(label)
        if b:
            out.append(f"- **{label}** = {b['describe']}" + (f" ({b['reused']})" if b.get("reused") else ""))
    out += ["", f"`{run['command']}`", "", run["header"] + ".", ""]
    if run.get("quick"):
        out += ["**`--quick` smoke test: runs of a few seconds, numbers are only indicative.**", ""]
    out += [ab_table(ab_summary(records), scenarios, servers), "",
            "A, B: median over the rounds (spread: (max - min) / max). B/A: ratio of the medians. B/A by round: "
            "each round's B over its A, run back to back; a difference is real when it shows in every round and "
            "exceeds what an A/A run of the same length shows (bench/README.md, \"A/B\"). req/s: higher is "
            "better; server us / req (the server's CPU time per response, from /proc) and its user-space and kernel "
            "parts: lower is better. "
            "other CPU %: the busiest of the pair's runs, 0-200 (CPUs 0 and 1, minus server and wrk).", ""]
    if run.get("notes"):
        out += ["Notes:", ""] + ["- " + _cell(n)[:600] for n in run["notes"]] + [""]
    labelled = [dict(r, server=f"{r['server']} ({r['build']})") for r in records if r.get("build")]
    out += ["<details><summary>Every run, in order</summary>", "", runs_table(labelled), "", "</details>", "",
            f"Raw data: `{run['json']}` (not committed: `bench/results-*.json` is git-ignored)."]
    return "\n".join(out)


RESULTS_HEAD = """\
# Benchmark results

Produced by `python -m bench` (see [README.md](README.md) for what each server, scenario and column
means, and how to run it). The block below is rewritten by every run; text outside it is kept.

"""


def write_results_md(path, block):
    """Replace the text between BEGIN and END in `path` (creating the file or appending the markers
    when needed); everything else in the file is kept."""
    text = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
    generated = f"{BEGIN}\n\n{block}\n\n{END}"
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        start, stop = text.index(BEGIN), text.index(END) + len(END)
        text = text[:start] + generated + text[stop:]
    elif text:
        text = text.rstrip("\n") + "\n\n" + generated + "\n"
    else:
        text = RESULTS_HEAD + generated + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


# -- the chart ------------------------------------------------------------------------------------------

def _color(server):
    if server in FASTCORE:
        return {"fastcore-static": "#c0392b", "fastcore-native": "#e67e22", "fastcore-wsgi": "#f1c40f"}[server]
    if server in PURE:
        return "#a569bd"
    if server == "nginx":
        return "#27ae60"
    return "#7f8c8d"


KERNEL_COLOR = "#d5d8dc"


def write_chart(path, run, records, servers, scenarios):
    """Small multiples, one panel per scenario (horizontal bars of mean req/s, log scale, the rounds'
    range as a whisker), then memory per idle connection, p99 latency at 1000 connections, and the
    server's CPU per keep-alive request split into user-space and kernel time.
    Returns None, or a one-line reason when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        return "matplotlib not installed: `pip install matplotlib` (or `pip install -e '.[bench]'`)"
    agg = aggregate(records)
    wrk_scenarios = [s for s in scenarios if s != "idle"]
    panels = [("rps", s) for s in wrk_scenarios]
    if "idle" in scenarios:
        panels.append(("idle", "idle"))
    if "c1000" in scenarios:
        panels.append(("p99", "c1000"))
    if any((a.get("user_us_per_req") is not None) for (_, scenario), a in agg.items() if scenario == "keepalive"):
        panels.append(("cost", "keepalive"))
    columns = min(len(panels), min((4, 3), key=lambda c: -len(panels) % c))   # the fewest empty cells
    rows = -(-len(panels) // columns)
    height = 0.32 * len(servers) + 1.3
    fig, axes = plt.subplots(rows, columns, figsize=(4.3 * columns, height * rows + 1.1), squeeze=False)
    order = list(reversed(servers))                   # first server at the top
    ys = range(len(order))
    for index, (kind, scenario) in enumerate(panels):
        ax = axes[index // columns][index % columns]
        values, lows, highs, labels, colors, user_parts = [], [], [], [], [], []
        for server in order:
            a = agg.get((server, scenario))
            colors.append(_color(server))
            value, label, low, high, user = None, "", None, None, None
            if a is None:
                label = ""
            elif a["na"]:
                label = "n/a"
            elif kind == "rps":
                value = a["rps"]
                rounds = [x for x in a["rps_rounds"] if x]
                if value:
                    low, high = min(rounds), max(rounds)
                    label = fmt_k(value) + (" !" if a["errors"] else "")
                else:
                    label = "failed"
            elif kind == "cost":
                if a["user_us_per_req"] is not None and a["system_us_per_req"] is not None:
                    user, value = a["user_us_per_req"], a["user_us_per_req"] + a["system_us_per_req"]
                    label = fmt_cost(a)
                else:
                    label = "-"
            elif kind == "idle":
                value = a["per_conn_bytes"] / 1024 if a["per_conn_bytes"] is not None else None
                label = f"{value:.1f}" if value is not None else "failed"
                if value is not None and value <= 0:
                    value, label = None, f"{value:.1f} (<= 0)"
            else:
                value = a["p99"] if a["rps"] else None
                label = fmt_lat(value) if value else "failed"
            values.append(value)
            lows.append(low)
            highs.append(high)
            labels.append(label)
            user_parts.append(user)
        present = [v for v in values if v]
        if kind == "cost":                            # user-space time in the server's colour, kernel grey
            users = [u or 0 for u in user_parts]
            ax.barh(list(ys), users, color=colors, height=0.7)
            ax.barh(list(ys), [(v or 0) - u for v, u in zip(values, users)], left=users, color=KERNEL_COLOR,
                    height=0.7)
        else:
            ax.barh(list(ys), [v or 0 for v in values], color=colors, height=0.7)
        for y, v, lo, hi in zip(ys, values, lows, highs):
            if v and lo is not None and hi is not None and hi > lo:
                ax.plot([lo, hi], [y, y], color="black", linewidth=1)
        log_scale = bool(present) and max(present) / min(present) > 20 and kind != "cost"
        top = max(present + [h for h in highs if h], default=1)   # the longest bar or whisker
        if present and log_scale:
            ax.set_xscale("log")
            left, right = min(present) / 3, top * 8
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        elif present and kind == "cost":
            # Scaled to fastcore, the pure engine and nginx, the comparison the panel is for; the
            # slow Python servers' bars run off the edge and keep their numbers.
            focus = [v for server, v in zip(order, values) if v and (server in FASTCORE + PURE or server == "nginx")]
            left, right = 0, 1.6 * max(focus or present)
        elif present:
            left, right = 0, top * 1.3
        else:
            left, right = 0, 1
            ax.set_xticks([])
        ax.set_xlim(left, right)
        formatter = fmt_k if kind == "rps" else (lambda x: f"{x:g}")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, pos, f=formatter: f(x)))
        for y, v, high, label in zip(ys, values, highs, labels):
            end = max(v, high or 0) if v else None            # right of the bar and of its whisker
            x = end * (1.15 if log_scale else 1) + (0 if log_scale else right * 0.02) if end else \
                (left * 1.15 if log_scale else right * 0.02)
            inside = kind == "cost" and end and x > right * 0.7   # off the edge: the number goes inside
            ax.text(right * 0.45 if inside else x, y, label, va="center", fontsize=7.5,
                    bbox=dict(facecolor="white", edgecolor="none", pad=1) if inside else None,
                    color="#7f8c8d" if label == "n/a" else "#c0392b" if "!" in label or label == "failed" else "black")
        titles = {"rps": f"{scenario}: req/s", "idle": "memory per idle connection (KiB)",
                  "p99": f"{scenario}: p99 latency (ms), lower is better",
                  "cost": f"{scenario}: server CPU us / request, user + kernel (grey)"}
        ax.set_title(titles[kind] + (" (log scale)" if log_scale else ""), fontsize=10, loc="left")
        ax.set_yticks(list(ys))
        ax.set_yticklabels(order if index % columns == 0 else [], fontsize=8.5)
        ax.tick_params(axis="x", labelsize=7.5)
        ax.grid(axis="x", which="major", alpha=0.3)
        ax.set_axisbelow(True)
        for spine in ("top", "right"):
            ax.spines[spine].set_visible(False)
    for index in range(len(panels), rows * columns):
        axes[index // columns][index % columns].axis("off")
    fig.suptitle(f"fastcore benchmark, {run['started']}: {run['chart_subtitle']}", fontsize=11, x=0.01, ha="left")
    from matplotlib.patches import Patch
    legend = [Patch(color=_color(s), label=label) for s, label in (
        ("fastcore-static", "fastcore static route"), ("fastcore-native", "fastcore native handler"),
        ("fastcore-wsgi", "fastcore WSGI"), ("pure-native", "fastcore.pure"), ("nginx", "nginx"),
        ("stdlib", "other servers"))]
    fig.legend(handles=legend, loc="upper right", ncol=len(legend), fontsize=8.5, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.965))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
