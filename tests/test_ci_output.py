"""bench.report.ci_output: the JUnit file (`--junit`) and GitHub's job summary
(GITHUB_STEP_SUMMARY) for `bench ab` and `bench compare`."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from bench.judge.compare import compare_runs
from bench.model.errors import ExitCode
from bench.report import ci_output as ci
from tests.conftest import REPO
from tests.test_compare import make_run, startup_times

HOSTILE = "vm<&\"'>\x00\x01\x1b[31m\x7f\ud800 N=1"
# A platform name written into a run (a lone surrogate does not survive bench's JSON
# lines: the reader refuses the line, so it never reaches a verdict).
PLATFORM = "vm<&\"'>\x01\x1b[31m"


def test_junit_round_trips_with_one_case_per_group_and_its_status(tmp_path):
    cases = [
        ci.JUnitCase("container N=1", "bench.compare", ci.FAILED, "regression (time)", "+23%"),
        ci.JUnitCase("container N=4", "bench.compare", ci.SKIPPED, "inconclusive", "MDE +61%"),
        ci.JUnitCase("vm N=1", "bench.compare", ci.PASSED, "no significant change"),
    ]
    path = tmp_path / "bench.xml"
    ci.write_junit(path, "bench compare c", cases)
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "3"
    [suite] = root
    assert (suite.get("failures"), suite.get("skipped"), suite.get("errors")) == ("1", "1", "0")
    got = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(got) == ["container N=1", "container N=4", "vm N=1"]
    failure = got["container N=1"].find("failure")
    assert failure.get("message") == "regression (time)" and failure.text == "+23%"
    assert got["container N=4"].find("skipped").get("message") == "inconclusive"
    assert list(got["vm N=1"]) == []
    assert not list(tmp_path.glob(".bench.xml.*"))  # no temporary file left


def test_a_hostile_name_is_escaped_and_control_characters_made_visible(tmp_path):
    path = tmp_path / "bench.xml"
    case = ci.JUnitCase(HOSTILE, "bench.ab", ci.FAILED, HOSTILE, HOSTILE)
    ci.write_junit(path, HOSTILE, [case])
    raw = path.read_bytes()
    assert b"\x00" not in raw and b"\x1b" not in raw and b"<&" not in raw
    [suite] = ET.parse(path).getroot()  # well-formed XML despite the name
    [tc] = suite
    want = "vm<&\"'>\\x00\\x01\\x1b[31m\x7f\\ud800 N=1"
    assert suite.get("name") == want and tc.get("name") == want
    assert tc.find("failure").get("message") == want and tc.find("failure").text == want


def test_a_case_status_is_checked():
    with pytest.raises(ValueError, match="status"):
        ci.JUnitCase("x", "bench.ab", "error")


def test_the_summary_is_appended_to_the_file_github_names(tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("### an earlier step\n")
    assert (
        ci.append_step_summary("### bench compare\n| a |", {ci.SUMMARY_ENV: str(summary)}) is None
    )
    assert ci.append_step_summary("second", {ci.SUMMARY_ENV: str(summary)}) is None
    assert summary.read_text() == "### an earlier step\n\n### bench compare\n| a |\n\nsecond\n"
    assert ci.append_step_summary("x", {}) is None  # not set: nothing to do


def test_a_linked_or_odd_summary_file_is_refused_in_one_line(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep\n")
    link = tmp_path / "summary.md"
    link.symlink_to(target)
    why = ci.append_step_summary("verdict", {ci.SUMMARY_ENV: str(link)})
    assert why and "symbolic link" in why and "\n" not in why
    assert target.read_text() == "keep\n"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so opening to write succeeds
    why = ci.append_step_summary("verdict", {ci.SUMMARY_ENV: str(fifo)})
    assert why and "not a regular file" in why
    why = ci.append_step_summary("verdict", {ci.SUMMARY_ENV: str(tmp_path / "missing")})
    assert why and "No such file" in why
    assert not (tmp_path / "missing").exists()  # never created


def _compare_dirs(tmp_path, slower: float):
    """Two runs in bench's format (a baseline and a current one)."""
    from bench.model.records import Sample
    from bench.model.results import RunWriter

    rng = np.random.default_rng(3)
    dirs = []
    for run_id, factor in (("base", 1.0), ("cur", slower)):
        w = RunWriter(tmp_path / run_id, run_id)
        w.start({"scenario": {"name": "ci", "platforms": [{"name": PLATFORM}]}})
        rows = [
            Sample(
                run_id=run_id, step=i, platform=PLATFORM, backend="docker", kind="container",
                host="sim", n=1, repeat=i, index=0, name=f"{run_id}-{i}", ok=True,
                ready_s=float(x) * factor,
            )
            for i, x in enumerate(startup_times(rng, 20))
        ]  # fmt: skip
        w.add_samples(rows)
        w.finish("complete")
        dirs.append(str(tmp_path / run_id))
    return dirs


def _bench(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_compare_writes_junit_and_the_summary_from_the_command_line(tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("")
    xml = tmp_path / "out.xml"
    p = _bench(
        "compare", *_compare_dirs(tmp_path, 3.0), "--junit", str(xml), "--json",
        env={ci.SUMMARY_ENV: str(summary)},
    )  # fmt: skip
    assert p.returncode == ExitCode.REGRESSION, p.stderr
    [suite] = ET.parse(xml).getroot()
    [tc] = suite.iter("testcase")
    assert tc.get("classname") == "bench.compare" and tc.find("failure") is not None
    assert tc.get("name") == "vm<&\"'>\\x01\\x1b[31m N=1"
    # --json on stdout, the Markdown verdict in the job summary.
    assert p.stdout.startswith("{") and "### bench compare" in summary.read_text()


def test_a_linked_summary_is_a_warning_and_the_verdict_stands(tmp_path):
    target = tmp_path / "target"
    target.write_text("")
    (tmp_path / "link").symlink_to(target)
    p = _bench(
        "compare", *_compare_dirs(tmp_path, 1.0), env={ci.SUMMARY_ENV: str(tmp_path / "link")}
    )
    assert p.returncode == ExitCode.INCONCLUSIVE  # one baseline: never "no regression"
    [line] = [x for x in p.stderr.splitlines() if ci.SUMMARY_ENV in x]
    assert line.startswith("warning:") and "symbolic link" in line
    assert target.read_text() == ""


def test_a_junit_path_in_a_missing_folder_is_a_usage_error_before_the_work(tmp_path):
    p = _bench("compare", "a", "b", "--junit", str(tmp_path / "no" / "x.xml"))
    assert p.returncode == ExitCode.USAGE and "does not exist" in p.stderr


def test_compare_cases_follow_the_verdicts():
    rng = np.random.default_rng(1)
    bases = [
        make_run(
            f"b{i}", {("container", 1): startup_times(rng, 20), ("vm", 1): startup_times(rng, 20)}
        )
        for i in range(5)
    ]
    cur = make_run(
        "c", {("container", 1): startup_times(rng, 20) + 0.5, ("vm", 1): startup_times(rng, 20)}
    )
    result = compare_runs(bases, cur)
    cases = {c.name: c for c in ci.compare_cases(result)}
    assert cases["container N=1"].status == ci.FAILED
    assert "regression (time)" in cases["container N=1"].message
    want = {"no significant change": ci.PASSED, "inconclusive": ci.SKIPPED}
    vm = next(g for g in result.groups if g.platform == "vm")
    assert cases["vm N=1"].status == want.get(vm.verdict, ci.PASSED)


def test_ab_cases_one_per_n_and_one_for_failures():
    from bench.judge.ab import analyse_ab
    from tests.test_ab_noise import ab_run

    result = analyse_ab(
        ab_run(np.random.default_rng(4), 30, change=lambda n, logs: logs + 0.3 * (n == 4))
    )
    cases = {c.name: c for c in ci.ab_cases(result)}
    assert list(cases) == ["B vs A N=1", "B vs A N=4", "B vs A failures"]
    assert cases["B vs A N=4"].status == ci.FAILED and "center" in cases["B vs A N=4"].message
    assert cases["B vs A N=1"].status in (ci.PASSED, ci.SKIPPED)
    assert cases["B vs A failures"].status == ci.PASSED


# --- examples/: every bench command line in the CI files is one the CLI accepts ------------


def _scripts(node):
    """The shell scripts of a GitHub Actions (`run:`) or GitLab CI (`script:`) file."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("run", "script", "before_script", "after_script"):
                yield from value if isinstance(value, list) else [value]
            else:
                yield from _scripts(value)
    elif isinstance(node, list):
        for value in node:
            yield from _scripts(value)


def bench_commands(text: str) -> list[list[str]]:
    """The argument lists of the `bench` invocations in a shell script (continuation
    lines joined, comments left out, cut at the first redirection or list operator)."""
    import shlex

    out = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if line.startswith("#") or "bin/bench " not in line:
            continue
        lexer = shlex.shlex(
            line[line.index("bin/bench ") + len("bin/bench ") :], posix=True, punctuation_chars=True
        )
        lexer.whitespace_split = True
        args = []
        for token in lexer:
            if token in (">", ">>", "<", "|", "||", "&&", ";", "&", "2>"):
                break
            args.append(token)
        out.append(args)
    return out


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_the_example_ci_files_use_only_commands_and_options_that_exist(name):
    import typer
    import yaml

    from bench.cli import app

    doc = yaml.safe_load((REPO / "examples" / name).read_text())
    commands = [c for script in _scripts(doc) for c in bench_commands(script)]
    used = {c[0] for c in commands}
    assert {"ab", "compare"} <= used, used
    group = typer.main.get_command(app)
    for args in commands:
        cmd = group.commands.get(args[0])
        assert cmd is not None, f"{name}: bench {args[0]} does not exist"
        try:
            cmd.make_context(f"bench {args[0]}", list(args[1:]))
        except Exception as e:  # typer's (vendored click's) UsageError: an unknown option
            pytest.fail(f"{name}: bench {' '.join(args)}: {e}")
        for a in args[1:]:
            if a.startswith("scenarios/"):
                assert (REPO / a).is_file(), f"{name}: {a} does not exist"
    junit = [c for c in commands if c[0] in ("ab", "compare")]
    assert all("--junit" in c for c in junit)


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_the_example_scripts_handle_exit_6_under_set_e(name):
    import yaml

    doc = yaml.safe_load((REPO / "examples" / name).read_text())
    for script in _scripts(doc):
        if "bin/bench ab" in script or "bin/bench compare" in script:
            assert "set -e" in script and "set +e" in script and "rc=$?" in script
            assert "6)" in script or "0|6)" in script


def test_ab_analyse_writes_junit_and_the_summary_from_the_command_line(tmp_path):
    from bench.model.records import Sample
    from bench.model.results import RunWriter
    from tests.test_ab_noise import ab_run

    run = ab_run(np.random.default_rng(5), 30, change=lambda n, logs: logs + 0.3)
    d = tmp_path / "ab-run"
    w = RunWriter(d, "ab-run")
    w.start({"scenario": {"name": "ci-ab", "platforms": []}, "ab": run.metadata["ab"]})
    w.add_samples([Sample.model_validate({**s, "run_id": "ab-run"}) for s in run.samples])
    w.finish("complete")
    summary = tmp_path / "summary.md"
    summary.write_text("")
    xml = tmp_path / "ab.xml"
    p = _bench("ab", "--analyse", str(d), "--junit", str(xml), env={ci.SUMMARY_ENV: str(summary)})
    assert p.returncode == ExitCode.REGRESSION, p.stderr
    [suite] = ET.parse(xml).getroot()
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases) == ["B vs A N=1", "B vs A N=4", "B vs A failures"]
    assert cases["B vs A N=4"].find("failure") is not None
    assert "### bench ab" in summary.read_text() and "### bench ab" in p.stdout
