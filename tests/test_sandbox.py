"""The sandbox against hostile engines: each is the correct demo engine with a few lines added, and each test
checks a claim of docs/grading.md (The sandbox): the grader finishes, writes the true report, nothing of the
engine survives, nothing outside its folder changes, and nothing the child sends is believed."""

import json
import os
import socket
import subprocess
import sysconfig
import tempfile
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from microgradx.cli import main
from microgradx.grading import Assignment, Limits, grade, grade_many
from microgradx.grading import sandbox as sb
from microgradx.grading.autograder import make_autograder
from microgradx.grading.sandbox import EngineCrash, Sandbox, confinement, validate_reply

CORRECT = (Path(__file__).resolve().parents[1] / "demos" / "data" / "student_engine.py").read_text()
QUICK = Assignment(examples=5, limits=Limits(example=3.0, start=10.0))
RULES = ["gradient[add]", "gradient[mul]"]
FULL = 4.0  # the two gradient rules' weights

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_root_user = pytest.mark.skipif(not confinement().drops_root,
                                     reason="needs the grader to run as root (the child then runs as its own user)")
CONFINED = confinement().namespaces or confinement().drops_root
# Where the docs say the child is not confined (the grader's own user, no namespaces), a hostile engine really
# would write into the package or leave a daemon: those tests do not run there.
needs_confinement = pytest.mark.skipif(not CONFINED, reason="the child runs as the grader's user without "
                                                            f"namespaces ({confinement().missing})")
needs_namespaces = pytest.mark.skipif(not confinement().namespaces,
                                      reason=f"needs bubblewrap namespaces ({confinement().missing})")


def hostile(folder: Path, *, at_import: str = "", in_backward: str = "", name: str = "engine.py") -> Path:
    """The correct engine with ``at_import`` run at import and ``in_backward`` run at the start of backward()."""
    seed = "        self.grad = 1.0\n"
    assert CORRECT.count(seed) == 1
    text = CORRECT.replace(seed, seed + textwrap.indent(textwrap.dedent(in_backward), " " * 8))
    text = "import os, sys, time, socket, signal, json\n" + text + "\n" + textwrap.dedent(at_import)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def correct(folder: Path) -> Path:
    return hostile(folder)


def score(report) -> float:
    return sum(r.score for r in report.results)


def no_survivors() -> None:
    """No process of the sandbox's user is left (the grader is root, so that user runs nothing else)."""
    if confinement().drops_root:
        assert sb._processes_of(sb.sandbox_uid()) == []


# ---------------------------------------------------------------------------------------------------------
# Reply validation: size and nesting before decoding, then keys, types and lengths
# ---------------------------------------------------------------------------------------------------------

ASKED = {"id": 4, "inputs": [1.0, 2.0, 3.0], "numbers": [1], "steps": [], "backward": True}
GOOD = {"ok": True, "data": 1.0, "seconds": 0.1, "grad_out": 1.0, "grads": [1.0, 2.0], "before": [1.0, 3.0],
        "after": [1.0, 3.0], "id": 4}


@pytest.mark.parametrize("line, words", [
    (b"[" * 200000, "nested deeper"),
    (b'{"a": [[[[1]]]]}', "nested deeper"),
    (b"x" * (sb.MAX_REPLY_BYTES + 1), "more than"),
    (b"not json", "not JSON"),
    (b"[1, 2]", "not an object"),
    (b'{"ok": true}', "answers request None"),
    (json.dumps({**GOOD, "id": 5}).encode(), "answers request 5"),
    (json.dumps({**GOOD, "id": True}).encode(), "answers request True"),
    (json.dumps({**GOOD, "grads": []}).encode(), "grads has 0 numbers"),
    (json.dumps({**GOOD, "after": [1.0, 2.0, 3.0]}).encode(), "after has 3 numbers"),
    (json.dumps({**GOOD, "grads": [1.0, "2"]}).encode(), "grads is list"),
    (json.dumps({**GOOD, "data": True}).encode(), "data is bool"),
    (json.dumps({**GOOD, "extra": 1}).encode(), "unexpected ['extra']"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "grad_out"}).encode(), "missing ['grad_out']"),
    (json.dumps({"ok": False, "id": 4, "stage": "forward", "error": 3, "where": ""}).encode(), "error is int"),
])
def test_a_forged_or_malformed_reply_is_an_engine_crash(line, words):
    with pytest.raises(EngineCrash, match="malformed reply") as e:
        validate_reply(line, ASKED)
    assert words in e.value.reason


def test_valid_replies_pass_and_their_strings_are_clipped():
    assert validate_reply(json.dumps(GOOD).encode(), ASKED) == GOOD
    assert validate_reply(b'{"ok": true, "data": NaN, "id": 4}', {**ASKED, "backward": False})["id"] == 4
    long = {"ok": False, "id": 4, "stage": "forward", "error": "E" * 200000, "where": "w"}
    got = validate_reply(json.dumps(long).encode(), ASKED)
    assert len(got["error"]) <= sb.MAX_TEXT and got["error"].startswith("EEE")
    hello = {"ok": True, "methods": ["tanh"], "module": "engine", "missing": {}, "near": {"reLU": "relu"}}
    assert validate_reply(json.dumps(hello).encode(), None, ["tanh"]) == hello
    with pytest.raises(EngineCrash, match="not asked about"):
        validate_reply(json.dumps(hello).encode(), None, ["relu"])


def test_validation_refuses_deep_nesting_without_decoding(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("json.loads ran on a deeply nested line")
    monkeypatch.setattr(sb.json, "loads", never)
    with pytest.raises(EngineCrash):
        validate_reply(b"[" * 200000, ASKED)
    with pytest.raises(EngineCrash):
        validate_reply(b'{"s": "\\"]", "a": [[[[' + b"]" * 4 + b"}", ASKED)


# ---------------------------------------------------------------------------------------------------------
# Hostile engines graded one at a time
# ---------------------------------------------------------------------------------------------------------

def test_forged_replies_on_the_private_pipe_are_that_engines_crash(tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out_fd = "int(sys.argv[2])"
    cases = {
        "nested": f"os.write({out_fd}, b'[' * 200000 + b'\\n')\n",
        "greeting": f"os.write({out_fd}, b'{{\"ok\": true}}\\n')\n",
    }
    for name, code in cases.items():
        rep = grade(hostile(tmp_path / name, at_import=code), QUICK, only=RULES)
        assert score(rep) == 0 and all("malformed reply" in r.finding["problem"] for r in rep.results), name
    rep = grade(hostile(tmp_path / "reply", in_backward=f"os.write({out_fd}, b'{{\"ok\": true}}\\n')\n"),
                QUICK, only=RULES)
    assert score(rep) == 0 and "malformed reply" in rep.results[0].finding["problem"]
    no_survivors()
    assert list(scratch.iterdir()) == []  # the copies of a sandbox that failed at import are gone too


# The engine shares the worker's process, so it can rewrite what the worker sends (here through json.dumps, which
# the worker's loop calls for every reply): only the parent's check of each reply stands between it and a score.
EMPTY_GRADS = """
        import json
        _dumps = json.dumps
        def dumps(obj, *args, **kw):
            if isinstance(obj, dict) and "grads" in obj:
                obj = {**obj, "grads": [], "before": [], "after": []}
            return _dumps(obj, *args, **kw)
        json.dumps = dumps
        """
SUBCLASS = """
        import microgradx
        class Value(microgradx.Value):
            pass
        """
READ_PROC = """
        seen = []
        for pid in (os.getppid(), 1):
            for part in ("environ", "cmdline"):
                try:
                    seen.append(open(f"/proc/{pid}/{part}").read())
                except OSError as e:
                    seen.append(str(e))
        raise ValueError(" | ".join(seen))
        """


def test_an_engine_without_backward_answering_empty_gradient_lists_scores_nothing(tmp_path):
    path = hostile(tmp_path, at_import=EMPTY_GRADS)
    rep = grade(path, QUICK, only=RULES)
    assert score(rep) == 0
    assert "grads has 0 numbers" in rep.results[0].finding["problem"]


@needs_confinement
def test_a_double_forked_setsid_daemon_does_not_survive_and_cannot_rewrite_the_results(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    results = out / "results.json"
    # The daemon finds the --gradescope path in the grader's command line and rewrites it after the grader ends.
    daemon = f"""
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                target = {str(results)!r}
                try:
                    args = open(f"/proc/{{os.getppid()}}/cmdline").read().split("\\0")
                    target = args[args.index("--gradescope") + 1]
                except Exception:
                    pass
                for _ in range(200):  # wait for the grader's report, then forge it
                    time.sleep(0.05)
                    try:
                        if os.path.exists(target) and "999" not in open(target).read():
                            open(target, "w").write('{{"score": 999}}')
                            break
                    except OSError:
                        pass
                os._exit(0)
            os._exit(0)
        """
    path = hostile(tmp_path / "eng", at_import=daemon)
    status = main(["grade", str(path), "--rules", ",".join(RULES), "--examples", "5",
                   "--gradescope", str(results)])
    assert status == 0
    no_survivors()
    time.sleep(0.5)  # ten times the daemon's polling interval
    res = json.loads(results.read_text())
    assert res["score"] == FULL and res["score"] != 999


@needs_confinement
def test_killing_the_parent_and_forging_results_fails(tmp_path):
    results = tmp_path / "results.json"
    path = hostile(tmp_path / "eng", in_backward=f"""
        try:
            open({str(results)!r}, "w").write('{{"score": 999}}')
        except OSError:
            pass
        for pid in {{os.getppid(), {os.getpid()}}}:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        """)
    assert main(["grade", str(path), "--rules", ",".join(RULES), "--examples", "5",
                 "--gradescope", str(results)]) == 0
    assert json.loads(results.read_text())["score"] == FULL
    no_survivors()


@needs_confinement
def test_the_grader_environment_and_command_line_do_not_reach_the_report(tmp_path, monkeypatch):
    monkeypatch.setenv("MGX_GRADER_SECRET", "s3cr3t-token")
    results = tmp_path / "results-cmdline-token.json"
    path = hostile(tmp_path / "eng", in_backward=READ_PROC)
    main(["grade", str(path), "--rules", ",".join(RULES), "--examples", "5", "--gradescope", str(results)])
    text = results.read_text()
    assert "ValueError" in text
    assert "s3cr3t-token" not in text
    if confinement().namespaces:  # as another user without namespaces, /proc/<pid>/cmdline stays readable
        assert "cmdline-token" not in text


def test_a_200_kb_source_line_does_not_make_a_large_report(tmp_path):
    path = hostile(tmp_path / "eng", in_backward=f"raise ValueError('{'x' * 200_000}')\n")
    results = tmp_path / "results.json"
    main(["grade", str(path), "--rules", ",".join(RULES), "--examples", "5", "--gradescope", str(results),
          "--json", str(tmp_path / "r.json")])
    assert "ValueError" in results.read_text()
    assert results.stat().st_size < 20_000 and (tmp_path / "r.json").stat().st_size < 20_000


@needs_confinement
def test_nothing_outside_the_engines_folder_changes(tmp_path):
    victim = correct(tmp_path / "victim")
    before = victim.read_text()
    outside = Path(tempfile.gettempdir()) / f"mgx-escape-{os.getpid()}"
    home = Path(os.path.expanduser("~")) / f".mgx-escape-{os.getpid()}"
    package = Path(sb._PACKAGE) / "grading" / f"pwned_{os.getpid()}.py"
    site = Path(sysconfig.get_paths()["purelib"]) / f"pwned_{os.getpid()}.pth"
    path = hostile(tmp_path / "eng", at_import=f"""
        for target in ({str(victim)!r}, {str(outside)!r}, {str(home)!r}, {str(package)!r}, {str(site)!r}):
            try:
                open(target, "w").write("class Value: pass\\n")
            except OSError:
                pass
        os.system("touch {outside}-system")
        """)
    rep = grade(path, QUICK, only=RULES)
    assert score(rep) == FULL
    no_survivors()
    assert victim.read_text() == before
    for made in (outside, Path(f"{outside}-system"), home, package, site):
        assert not made.exists(), made
    assert score(grade(victim, QUICK, only=RULES)) == FULL


def test_microgradx_is_not_reachable_from_the_engine(tmp_path):
    path = hostile(tmp_path / "eng", at_import=SUBCLASS)
    rep = grade(path, QUICK, only=RULES)
    assert score(rep) == 0
    assert "microgradx" in rep.results[0].finding["problem"]


@needs_namespaces
def test_the_engine_cannot_open_a_socket(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    path = hostile(tmp_path / "eng", in_backward=f"""
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=0.5).sendall(b"leak")
        except OSError as e:
            raise ValueError(f"no network: {{e}}")
        """)
    rep = grade(path, QUICK, only=RULES[:1])
    assert "no network" in rep.results[0].finding["problem"]
    with pytest.raises(socket.timeout):
        server.accept()
    server.close()


@needs_root_user
def test_a_fork_bomb_is_bounded_by_the_process_limit_and_killed(tmp_path):
    path = hostile(tmp_path / "eng", in_backward="""
        made = 0
        for _ in range(500):
            try:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                made += 1
            except OSError:
                break
        raise ValueError(f"forked {made}")
        """)
    asg = replace(QUICK, limits=Limits(example=5.0, processes=20))
    rep = grade(path, asg, only=RULES[:1])
    made = int(rep.results[0].finding["problem"].split("forked ")[1].split()[0])
    assert made < 20
    no_survivors()


def test_temporary_copies_are_removed_when_the_sandbox_cannot_start(tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    def broken(*args, **kwargs):
        raise OSError("no such interpreter")
    monkeypatch.setattr(sb.subprocess, "Popen", broken)
    with pytest.raises(EngineCrash, match="could not start"):
        Sandbox(correct(tmp_path / "eng"))
    assert list(scratch.iterdir()) == []


def test_grading_leaves_no_hypothesis_folder_in_the_current_directory(tmp_path, monkeypatch):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    main(["grade", str(correct(tmp_path / "eng")), "--rules", "gradient[add]", "--examples", "3", "--quiet"])
    assert list(work.iterdir()) == []


def test_the_autograder_bundle_quotes_the_file_name(tmp_path):
    toml = tmp_path / "hw.toml"
    toml.write_text("[assignment]\nfile = \"a'$(touch PWNED).py\"\n")
    import zipfile

    script = zipfile.ZipFile(make_autograder(toml, tmp_path / "a.zip")).read("run_autograder").decode()
    assert "|| true" not in script
    engine_line = next(line for line in script.splitlines() if line.startswith("ENGINE="))
    shown = subprocess.run(["bash", "-c", engine_line + '\nprintf %s "$ENGINE"'], cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout
    assert shown == "/autograder/submission/a'$(touch PWNED).py"
    assert not (tmp_path / "PWNED").exists()


# ---------------------------------------------------------------------------------------------------------
# A batch survives any one engine
# ---------------------------------------------------------------------------------------------------------

@needs_confinement
def test_a_batch_with_two_jobs_survives_every_hostile_engine(tmp_path, monkeypatch):
    monkeypatch.setenv("MGX_GRADER_SECRET", "s3cr3t-token")
    subs = tmp_path / "submissions"
    first = correct(subs / "a_first")
    victim = correct(subs / "b_victim")
    overwrite = "".join(f"""
        try:
            open({str(p)!r}, "w").write("x = 1 / 0\\n")
        except OSError:
            pass
        """ for p in (first, victim))
    engines = [
        first,
        hostile(subs / "c_overwrite", at_import=overwrite),
        hostile(subs / "d_nested", at_import="os.write(int(sys.argv[2]), b'[' * 200000 + b'\\n')\n"),
        hostile(subs / "e_killer", in_backward="""
            for pid in (os.getppid(), os.getpgid(0)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            """),
        hostile(subs / "f_daemon", at_import="""
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    time.sleep(30)
                os._exit(0)
            """),
        hostile(subs / "g_empty_grads", at_import=EMPTY_GRADS),
        hostile(subs / "h_microgradx", at_import=SUBCLASS),
        hostile(subs / "i_long_line", in_backward=f"raise ValueError('{'x' * 200_000}')\n"),
        hostile(subs / "j_proc", in_backward=READ_PROC),
        victim,
    ]
    csv = tmp_path / "grades.csv"
    status = main(["grade", *map(str, engines), "--jobs", "2", "--rules", ",".join(RULES), "--examples", "5",
                   "--csv", str(csv), "--json", str(tmp_path / "all.json")])
    assert status == 3  # h_microgradx cannot import microgradx: a setup error, the worst status of the batch
    reports = json.loads((tmp_path / "all.json").read_text())
    scores = {Path(r["engine"]).parent.name: r["score"] for r in reports}
    assert scores["a_first"] == scores["b_victim"] == scores["c_overwrite"] == scores["f_daemon"] == FULL
    assert scores["d_nested"] == scores["g_empty_grads"] == scores["h_microgradx"] == scores["i_long_line"] == 0
    text = (tmp_path / "all.json").read_text()
    assert "s3cr3t-token" not in text and len(text) < 200_000
    assert len(csv.read_text().splitlines()) == 1 + len(engines)
    no_survivors()


def test_a_dead_grading_process_is_that_engines_crash(tmp_path):
    # A grading process that dies (here: on a file that vanished) costs that engine only.
    ok = correct(tmp_path / "ok")
    reports = grade_many([str(ok), str(tmp_path / "missing.py")], QUICK, only=RULES, jobs=1)
    assert score(reports[0]) == FULL and score(reports[1]) == 0
    assert "grading process" in reports[1].results[0].finding["problem"]


def test_a_dead_grader_leaves_a_zero_result_not_a_forged_one(tmp_path):
    import zipfile

    toml = tmp_path / "hw.toml"
    toml.write_text('[assignment]\nfile = "engine.py"\n')
    script = zipfile.ZipFile(make_autograder(toml, tmp_path / "a.zip")).read("run_autograder").decode()
    root = tmp_path / "autograder"
    for folder in ("source", "submission", "results"):
        (root / folder).mkdir(parents=True)
    correct(root / "submission")
    run = tmp_path / "run_autograder"
    run.write_text(script.replace("/autograder", str(root)))
    # A stand-in for a grader that an engine forged results for and then killed.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text('#!/bin/bash\nfor a; do [ "$prev" = --gradescope ] && out=$a; prev=$a; done\n'
                                  'echo \'{"score": 999}\' > "$out"\nkill -9 $$\n')
    (fake / "python3").chmod(0o755)
    done = subprocess.run(["bash", str(run)], env={"PATH": f"{fake}:/usr/bin:/bin"}, capture_output=True)
    assert done.returncode == 137
    result = json.loads((root / "results" / "results.json").read_text())
    assert result["score"] == 0 and "exit status 137" in result["output"]
