"""bench/report.py's arithmetic on made-up runs: the per-request CPU split and the kernel floor.

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
