"""The A/B mode's builds and running order: `python -m bench --ab REV_A REV_B` (bench/run.py runs it).

A revision is anything `git rev-parse` accepts in this repository: a commit, a branch, HEAD~1, a tag,
`worktrees/NAME/HEAD` (another worktree's HEAD) or `main-worktree/HEAD`. Two more spellings name a
working tree as it is now, uncommitted changes and untracked files (not ignored ones) included:
WORKTREE for this checkout, WORKTREE:PATH for another.

Building. Each revision is exported into a directory of its own: `git archive` for a commit, which
touches neither this checkout nor the repository's list of worktrees; a file-by-file copy for a
working tree. It is built there with `python setup.py -q build_ext --inplace` (same interpreter,
same environment, so FASTCORE_DEBUG applies to both sides), and a child process then imports
fastcore from it to check that fastcore and fastcore._core come from that directory. The two
builds run one after the other: the machine has few cores and the builds are not what is measured.
Builds of the same commit are shared (an A/A run builds once). With --build-dir, a commit's build is
kept there and reused by later runs; working trees are always built afresh.

Running. The servers import fastcore from the build (bench/servers.py --fastcore-from DIR, which
refuses to serve any other fastcore), while the harness (bench/: launchers, apps, wrk scripts) is
this checkout's for both sides: only fastcore differs between A and B.

Order (plan below): every round goes over every scenario and server, and for each (scenario,
server) runs A and B back to back, A then B in odd rounds and B then A in even ones. The two runs of
a pair are a few seconds apart, so they share the machine's state of the moment; swapping the order
each round (ABBA) cancels, over every two rounds, a steady drift of the machine and anything the
first run of a pair leaves to the second (TIME_WAIT sockets after `close`, caches, CPU frequency),
which a plain ABAB order would charge to B every time.
"""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time

LABELS = ("A", "B")
WORKTREE = "WORKTREE"
AB_SERVERS = ["fastcore-static", "fastcore-native", "fastcore-wsgi", "fastcore-asgi", "fastcore-native-threads",
              "fastcore-wsgi-threads", "pure-native", "pure-wsgi"]
AB_DEFAULT_SERVERS = ["fastcore-static", "fastcore-native", "fastcore-wsgi"]
AB_DEFAULT_SCENARIOS = ["keepalive", "pipelined", "close"]
AB_DEFAULT_ROUNDS = 4          # even, so that ABBA balances; enough on a quiet 2-core machine (bench/README.md)
STAMP = ".bench-build.json"    # written into a build directory once the build imports correctly


class BuildError(Exception):
    """A revision that cannot be resolved, exported or built; the message says which and why."""


def git(root, *argv, binary=False):
    out = subprocess.run(["git", "-C", root, *argv], capture_output=True, timeout=120)
    if out.returncode:
        raise BuildError(f"git {' '.join(argv)}: {out.stderr.decode('utf-8', 'replace').strip()}")
    return out.stdout if binary else out.stdout.decode("utf-8", "replace").strip()


def resolve(rev, root):
    """What `rev` names: {"rev", "commit" (full hash; for a working tree, its HEAD), "worktree" (the
    checkout's path, or None for a commit), "subject", "describe" (one line for the report)}."""
    if rev == WORKTREE or rev.startswith(WORKTREE + ":"):
        path = os.path.abspath(rev.split(":", 1)[1]) if ":" in rev else root
        commit = git(path, "rev-parse", "--verify", "HEAD^{commit}")
        changed = git(path, "status", "--porcelain", "--untracked-files=normal").splitlines()
        subject = git(path, "log", "-1", "--format=%s", commit)
        state = f"{len(changed)} uncommitted change(s)" if changed else "no uncommitted change"
        return {"rev": rev, "commit": commit, "worktree": path, "subject": subject,
                "describe": f"{rev} ({path}: {commit[:10]} \"{subject}\" + {state})"}
    try:
        commit = git(root, "rev-parse", "--verify", "--end-of-options", rev + "^{commit}")
    except BuildError as error:
        raise BuildError(f"{rev!r} is not a revision of {root}: {error}") from None
    subject = git(root, "log", "-1", "--format=%s", commit)
    return {"rev": rev, "commit": commit, "worktree": None, "subject": subject,
            "describe": f"{rev} = {commit[:10]} \"{subject}\""}


def export(spec, dest):
    """Put the revision's files into `dest` (which must not exist)."""
    os.makedirs(dest)
    if spec["worktree"] is None:
        archive = subprocess.Popen(["git", "-C", spec["root"], "archive", "--format=tar", spec["commit"]],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        untar = subprocess.run(["tar", "-x", "-C", dest], stdin=archive.stdout, capture_output=True)
        archive.stdout.close()
        error = archive.stderr.read().decode("utf-8", "replace").strip()
        if archive.wait() or untar.returncode:
            raise BuildError(f"git archive {spec['commit'][:10]} | tar -x: {error or untar.stderr.decode().strip()}")
        return
    listing = git(spec["worktree"], "ls-files", "-z", "--cached", "--others", "--exclude-standard", binary=True)
    for name in filter(None, listing.decode("utf-8", "surrogateescape").split("\0")):
        source, target = os.path.join(spec["worktree"], name), os.path.join(dest, name)
        if not os.path.lexists(source):                # deleted in the working tree, not yet committed
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)


def build_key(spec):
    """A commit's build directory name under --build-dir: the commit, the interpreter's extension
    suffix (a build is only good for the Python it was built for) and the debug flag."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ""
    debug = "-debug" if os.environ.get("FASTCORE_DEBUG") == "1" else ""
    return f"{spec['commit'][:12]}{suffix.replace('.so', '').replace('.', '-')}{debug}"


def imported_files(directory):
    """(fastcore.__file__, fastcore._core.__file__) as a child process that puts `directory` first on
    sys.path sees them. Raises BuildError when the import fails or finds fastcore elsewhere."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import fastcore, fastcore._core; "
            "print(fastcore.__file__); print(fastcore._core.__file__)")
    out = subprocess.run([sys.executable, "-c", code, directory], capture_output=True, text=True,
                         cwd=directory, timeout=60)
    if out.returncode:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        raise BuildError(f"the build in {directory} does not import: {last}")
    files = out.stdout.split("\n")[:2]
    stray = [f for f in files if not inside(f, directory)]
    if stray:
        raise BuildError(f"importing fastcore from {directory} found {', '.join(stray)}")
    return files


def inside(path, directory):
    return os.path.realpath(path).startswith(os.path.realpath(directory) + os.sep)


def build(spec, dest):
    """Export and build `spec` into `dest`; returns the seconds it took."""
    t0 = time.monotonic()
    export(spec, dest)
    log_path = dest + ".build.log"
    with open(log_path, "wb") as out:
        done = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=dest,
                              stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if done.returncode:
        with open(log_path, "rb") as f:
            tail = f.read()[-2000:].decode("utf-8", "replace")
        raise BuildError(f"building {spec['describe']} in {dest} failed (exit {done.returncode}); "
                         f"end of {log_path}:\n{tail}")
    return time.monotonic() - t0


def prepare_builds(revs, root, build_dir, cache, log):
    """Resolve, export and build REV_A and REV_B. build_dir: where the builds go (with cache=True,
    kept there for the next run, and a commit already built there is reused). Returns
    {"A": build, "B": build}, each build the resolved spec plus "dir", "fastcore_file", "core_file",
    "build_seconds" and "reused"."""
    specs = {}
    for label, rev in zip(LABELS, revs):
        specs[label] = dict(resolve(rev, root), root=root)
        log(f"# {label}: {specs[label]['describe']}")
    os.makedirs(build_dir, exist_ok=True)
    builds, by_commit = {}, {}
    for label, spec in specs.items():
        same = spec["worktree"] is None and by_commit.get(spec["commit"])
        if same:                                       # A/A: one build serves both sides
            builds[label] = dict(spec, **{k: same[k] for k in ("dir", "fastcore_file", "core_file")},
                                 build_seconds=0.0, reused=f"same build as {same['label']}", label=label)
            log(f"# {label}: the same commit as {same['label']}: sharing its build")
            continue
        dest = os.path.join(build_dir, build_key(spec) if cache and spec["worktree"] is None else label)
        stamp = os.path.join(dest, STAMP)
        if cache and spec["worktree"] is None and os.path.exists(stamp):
            fastcore_file, core_file = imported_files(dest)
            build_info = dict(spec, dir=dest, fastcore_file=fastcore_file, core_file=core_file, build_seconds=0.0,
                              reused=f"kept from an earlier run in {dest}", label=label)
            log(f"# {label}: reusing the build in {dest}")
        else:
            if os.path.exists(dest):                   # a build that did not finish: start over
                shutil.rmtree(dest)
            what = f"the working tree {spec['worktree']}" if spec["worktree"] else spec["commit"][:10]
            log(f"# {label}: building {what} in {dest} (python setup.py -q build_ext --inplace)")
            seconds = build(spec, dest)
            fastcore_file, core_file = imported_files(dest)
            build_info = dict(spec, dir=dest, fastcore_file=fastcore_file, core_file=core_file,
                              build_seconds=round(seconds, 1), reused=None, label=label)
            with open(stamp, "w") as f:
                json.dump({k: build_info[k] for k in ("rev", "commit", "describe", "build_seconds")}, f)
            log(f"# {label}: built in {seconds:.0f} s")
        log(f"# {label}: fastcore from {fastcore_file}, _core from {core_file}")
        builds[label] = build_info
        if spec["worktree"] is None:
            by_commit[spec["commit"]] = build_info
    return builds


def pair_order(round_no):
    """The order of the A and B runs of one (scenario, server) in round `round_no` (from 1): ABBA."""
    return LABELS if round_no % 2 else LABELS[::-1]


def plan(rounds, scenarios, servers, skip=lambda server, scenario: False):
    """[(round, scenario, server, label), ...] in running order: rounds, then scenarios, then servers,
    then the A/B pair in the round's order. skip(server, scenario) leaves a pair out (not applicable)."""
    return [(round_no, scenario, server, label)
            for round_no in range(1, rounds + 1) for scenario in scenarios for server in servers
            if not skip(server, scenario) for label in pair_order(round_no)]
