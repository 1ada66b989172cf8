"""bench/report.py's arithmetic on made-up runs: the per-request CPU split, the kernel floor, and the
A/B mode's B/A table; and bench/ab.py's running order (ABBA).

No server and no wrk here: bench/run.py measures, report.py only turns records into Markdown, so
its ratios can be checked on records whose answers are known. Skipped where bench/ is not beside
the tests (the installed-wheel run of .ci/run copies only tests/ and pyext/).
"""
import pytest

report = pytest.importorskip("bench.report")


def keepalive_run(server, rps, user_us, system_us, round_=1):
    requests = rps * 5
    return {"round": round_, "server": server, "scenario": "keepalive", "rps": rps, "requests": requests,
            "req_per_cpu_s": round(1e6 / (user_us + system_us)), "latency_ms": {"50": 0.2, "99": 0.6},
            "errors": 0, "user_us_per_req": user_us, "system_us_per_req": system_us}


def test_scenario_table_shows_user_and_kernel_microseconds_per_request():
    agg = report.aggregate([keepalive_run("fastcore-native", 150_000, 0.5, 6.0),
                            keepalive_run("fastcore-native", 150_000, 0.7, 6.2, round_=2)])
    row = next(line for line in report.scenario_table(agg, ["fastcore-native"], "keepalive").splitlines()
               if line.startswith("| fastcore-native"))
    assert "| 0.60 + 6.10 |" in row                     # means over the two rounds


def test_kernel_floor_bounds_the_compiled_over_pure_ratio():
    agg = report.aggregate([keepalive_run("fastcore-native", 150_000, 0.5, 6.0),
                            keepalive_run("pure-native", 70_000, 8.0, 6.0),
                            keepalive_run("nginx", 155_000, 1.0, 5.0)])
    lines = report.kernel_floor_lines(agg)
    native = next(line for line in lines if line.startswith("- fastcore-native vs pure-native"))
    assert "(16.0 x less)" in native                    # 8.0 / 0.5 us of user-space time
    assert "14.00 / 6.00 = 2.33 x" in native            # pure's total over compiled's kernel share
    assert "measured 2.14 x" in native                  # 150k / 70k
    assert any(line.startswith("- nginx") and "2.21 x pure-native" in line for line in lines)


def test_kernel_floor_is_left_out_without_the_cpu_split():
    """Runs recorded before the split existed (older JSON given to --from-json) have no floor."""
    old = keepalive_run("fastcore-native", 150_000, 0.5, 6.0)
    pure = keepalive_run("pure-native", 70_000, 8.0, 6.0)
    del old["user_us_per_req"], old["system_us_per_req"]
    assert report.kernel_floor_lines(report.aggregate([old, pure])) == []
    row = next(line for line in report.scenario_table(report.aggregate([old]), ["fastcore-native"],
                                                      "keepalive").splitlines() if line.startswith("| fastcore"))
    assert "| - |" in row


def test_chart_has_the_cpu_split_panel_when_the_runs_have_it(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib import image
    records = [keepalive_run("fastcore-native", 150_000, 0.5, 6.0), keepalive_run("pure-native", 70_000, 8.0, 6.0),
               keepalive_run("gunicorn", 10_000, 70.0, 23.0)]
    run = {"started": "2026-01-01T00:00:00", "chart_subtitle": "test"}
    servers = ["fastcore-native", "pure-native", "gunicorn"]
    with_split, without_split = tmp_path / "with.png", tmp_path / "without.png"
    assert report.write_chart(str(with_split), run, records, servers, ["keepalive"]) is None
    for record in records:
        del record["user_us_per_req"], record["system_us_per_req"]
    assert report.write_chart(str(without_split), run, records, servers, ["keepalive"]) is None
    # one panel (req/s) without the split, two side by side with it: the figure is wider
    assert image.imread(str(with_split)).shape[1] > image.imread(str(without_split)).shape[1]


# -- A/B mode (python -m bench --ab): the order of the runs and the B/A arithmetic ----------------------

def ab_run(build, round_, rps, user_us, system_us, scenario="keepalive", server="fastcore-static", **extra):
    return dict(keepalive_run(server, rps, user_us, system_us, round_=round_), build=build, scenario=scenario,
                **extra)


def test_ab_plan_runs_each_pair_back_to_back_in_abba_order():
    ab = pytest.importorskip("bench.ab")
    plan = ab.plan(4, ["keepalive", "close"], ["fastcore-static", "fastcore-wsgi"],
                   skip=lambda server, scenario: server == "fastcore-wsgi" and scenario == "close")
    assert len(plan) == 4 * 3 * 2                       # rounds x applicable pairs x builds
    for first, second in zip(plan[::2], plan[1::2]):   # every A run sits next to the B run of its pair
        assert first[:3] == second[:3] and {first[3], second[3]} == {"A", "B"}
    orders = {round_: "".join(label for r, scenario, server, label in plan
                              if r == round_ and (scenario, server) == ("keepalive", "fastcore-static"))
              for round_ in (1, 2, 3, 4)}
    assert orders == {1: "AB", 2: "BA", 3: "AB", 4: "BA"}
    assert ("close", "fastcore-wsgi") not in {(scenario, server) for _, scenario, server, _ in plan}


def test_ab_summary_medians_spreads_and_ratios():
    records = [ab_run("A", 1, 100_000, 1.0, 5.0), ab_run("B", 1, 110_000, 0.9, 5.0),
               ab_run("B", 2, 99_000, 1.2, 5.0), ab_run("A", 2, 90_000, 1.0, 5.0),
               ab_run("A", 3, 95_000, 1.1, 5.0), ab_run("B", 3, 104_500, 1.1, 5.0)]
    summary = report.ab_summary(records)[("keepalive", "fastcore-static")]
    assert summary["A"]["rps"]["median"] == 95_000 and summary["B"]["rps"]["median"] == 104_500
    assert summary["A"]["rps"]["spread"] == pytest.approx(0.1)          # (100k - 90k) / 100k
    assert summary["rps"]["ratio"] == pytest.approx(1.1)
    assert summary["rps"]["round_ratios"] == pytest.approx([1.1, 1.1, 1.1])   # B / A of the same round
    assert summary["user_us_per_req"]["round_ratios"] == pytest.approx([0.9, 1.2, 1.0])
    assert summary["server_us_per_req"]["ratio"] == pytest.approx(6.1 / 6.0)   # user + kernel, medians


def test_ab_summary_pairs_rounds_and_leaves_out_failed_and_unpaired_runs():
    records = [ab_run("A", 1, 100_000, 1.0, 5.0), ab_run("B", 1, 120_000, 1.0, 5.0),
               ab_run("A", 2, 100_000, 1.0, 5.0),
               {"round": 2, "server": "fastcore-static", "scenario": "keepalive", "build": "B",
                "error": "did not start: ..."},
               ab_run("A", 3, 100_000, 1.0, 5.0)]
    summary = report.ab_summary(records)[("keepalive", "fastcore-static")]
    assert summary["rps"]["round_ratios"] == pytest.approx([1.2])         # round 1 only: both ran
    assert summary["B"]["rps"]["spread"] is None                          # one value: no spread
    assert summary["notes"] == ["B: did not start: ..."]


def test_ab_table_rows_and_ratio_cells():
    records = [ab_run("A", 1, 100_000, 1.0, 5.0, other_cpu_pct=3.0), ab_run("B", 1, 110_000, 0.5, 5.0),
               ab_run("B", 2, 121_000, 0.5, 5.0, other_cpu_pct=12.5), ab_run("A", 2, 110_000, 1.0, 5.0)]
    table = report.ab_table(report.ab_summary(records), ["keepalive", "close"], ["fastcore-static"])
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 4                               # req/s, server, user and kernel us / req
    assert rows[0].startswith("| keepalive | fastcore-static | req/s | 105,000 (9 %) | 115,500 (9 %) | 1.100 | "
                              "1.100 1.100 | 12 |")
    assert rows[1].startswith("|  |  | server us / req | 6.00 (0 %) | 5.50 (0 %) | 0.917 | 0.917 0.917 |")
    assert rows[2].startswith("|  |  | user us / req | 1.00 (0 %) | 0.50 (0 %) | 0.500 |")
    assert "close" not in table                          # no runs, no row


def test_ab_markdown_names_both_builds_and_the_command():
    run = {"started": "2026-01-01T00:00:00", "elapsed": "0:10:00", "header": "2 round(s)",
           "command": "python -m bench --ab HEAD~1 HEAD", "json": "bench/results-ab-x.json", "notes": []}
    builds = {"A": {"describe": "HEAD~1 = 1111111111 \"old\""}, "B": {"describe": "HEAD = 2222222222 \"new\""}}
    text = report.ab_markdown(run, [ab_run("A", 1, 100_000, 1.0, 5.0), ab_run("B", 1, 100_000, 1.0, 5.0)],
                              ["fastcore-static"], ["keepalive"], builds)
    assert "- **A** = HEAD~1 = 1111111111 \"old\"" in text and "- **B** = HEAD = 2222222222 \"new\"" in text
    assert "`python -m bench --ab HEAD~1 HEAD`" in text
    assert "| 1 | keepalive | fastcore-static (A) |" in text    # every run, named with its build
