"""Malformed scenarios, as a user meets them: `bench run` in a subprocess, real engines.

Every file in tests/bad_scenarios/ is one bad input. Its first lines say what bench
must answer:

    # expect: <a substring of the error message>
    # key: <the key path the message names>  (`-` when none applies: YAML syntax
                                             # error, not a mapping, unreadable text)
    # validate: skip (<why>)                  (optional: only the engines can tell)

For each file, `bench run FILE --out <tmp>/results` (cwd = an empty <tmp>) must exit 2
with exactly one line on stderr, `bench: error: FILE[:LINE]: KEY: ...`, containing the
expected text; start no container or domain; and write no file. `bench validate FILE`
must print the same line and exit 2, unless the file says only the engines can tell.

A command with shell metacharacters is *accepted* (and passed as argv, never through a
shell): see test_docker_command_is_argv_not_shell in test_engines.py.

Known bench bugs are listed in BUGS below as strict xfails: when one is fixed, its
test XPASSes and fails the suite, so the entry must be removed with the fix.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.backends.base import LABEL_RUN, NAME_PREFIX

CORPUS = Path(__file__).resolve().parent.parent / "bad_scenarios"
FILES = sorted(CORPUS.glob("*.yaml"))
# Every corpus scenario that may get past parsing is named `bad-...`; bench names run
# ids (container labels, domain names) after the scenario. See _is_ours.
SCENARIO_PREFIX = "bad-"

pytestmark = [pytest.mark.docker, pytest.mark.libvirt]


@dataclass(frozen=True)
class Case:
    path: Path
    expect: str
    key: str | None  # None: no key path applies
    validate: bool  # False: only `bench run` (the engines) can tell

    @property
    def id(self) -> str:
        return self.path.stem


def load_case(path: Path) -> Case:
    header: dict[str, str] = {}
    # Bytes, not text: one file of the corpus is deliberately not UTF-8.
    for raw in path.read_bytes().splitlines():
        line = raw.decode("utf-8", errors="replace")
        m = re.match(r"#\s*(expect|key|validate):\s*(.*?)\s*$", line)
        if not m:
            break
        header[m.group(1)] = m.group(2)
    assert header.get("expect") and header.get("key"), f"{path.name}: needs # expect: and # key:"
    key = header["key"]
    return Case(
        path=path,
        expect=header["expect"],
        key=None if key == "-" else key,
        validate=not header.get("validate", "").startswith("skip"),
    )


CASES = [load_case(f) for f in FILES]

# (test, file stem) -> reason: what bench does today for that file. "run": exit code,
# one line, expected text; "locate": the line names the file and key path; "validate":
# `bench validate` prints the same line and exits 2.
BUGS: dict[tuple[str, str], str] = {}


def params(test: str, cases: list[Case]) -> list:
    out = []
    for c in cases:
        reason = BUGS.get((test, c.id))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


def test_bug_list_names_real_files():
    stems = {c.id for c in CASES}
    assert {stem for _, stem in BUGS} <= stems
    assert len(CASES) >= 20


# -- running bench -----------------------------------------------------------------


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    created: set[tuple[str, str, str]]  # bench instances that appeared during the run
    cwd_after: list[str]
    results_exists: bool


_outcomes: dict[Path, Outcome] = {}


def bench(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid


def bench_instances(docker_api, libvirt_conn) -> set[tuple[str, str, str]]:
    """(kind, name, run id) of every container and domain bench may have created."""
    found = set()
    for c in docker_api.containers(all=True, filters={"label": LABEL_RUN}):
        found.add(("container", c["Names"][0].lstrip("/"), c["Labels"].get(LABEL_RUN, "")))
    for d in libvirt_conn.listAllDomains():
        if d.name().startswith(NAME_PREFIX):
            found.add(("domain", d.name(), ""))
    return found


def _is_ours(item: tuple[str, str, str], pid: int) -> bool:
    """Whether an instance that appeared during our run could be our run's.

    In CI the suite runs alone: anything new is ours. On a shared development host other
    bench runs come and go meanwhile; theirs carry their own scenario's name in the run
    id, ours `bad-...` (or, for the KVM probe, our pid).
    """
    if os.environ.get("CI") == "true":
        return True
    kind, name, run_id = item
    if kind == "container":
        return run_id.startswith(SCENARIO_PREFIX) or not run_id
    return name.startswith(NAME_PREFIX + SCENARIO_PREFIX) or name == f"{NAME_PREFIX}kvm-probe-{pid}"


def run_case(case: Case, docker_api, libvirt_conn, tmp_path_factory) -> Outcome:
    """`bench run` once per file; the tests below check different parts of the outcome."""
    if case.path in _outcomes:
        return _outcomes[case.path]
    tmp = tmp_path_factory.mktemp(case.id)
    results = tmp / "results"
    before = bench_instances(docker_api, libvirt_conn)
    p, pid = bench("run", str(case.path), "--out", str(results), cwd=tmp)
    after = bench_instances(docker_api, libvirt_conn)
    outcome = Outcome(
        returncode=p.returncode,
        stdout=p.stdout,
        stderr=p.stderr,
        created={x for x in after - before if _is_ours(x, pid)},
        cwd_after=sorted(x.name for x in tmp.iterdir()),
        results_exists=results.exists(),
    )
    _outcomes[case.path] = outcome
    return outcome


def one_line(stderr: str) -> str:
    assert stderr.endswith("\n") and stderr.count("\n") == 1, f"not one line:\n{stderr}"
    return stderr.rstrip("\n")


# -- the tests ---------------------------------------------------------------------


@pytest.mark.parametrize("case", params("run", CASES))
def test_run_exits_2_with_one_line(case, docker_api, libvirt_conn, tmp_path_factory):
    o = run_case(case, docker_api, libvirt_conn, tmp_path_factory)
    assert o.returncode == 2, o.stderr
    line = one_line(o.stderr)
    assert line.startswith("bench: error: ")
    assert case.expect in line
    assert o.stdout == ""


@pytest.mark.parametrize("case", params("locate", CASES))
def test_run_message_names_file_and_key(case, docker_api, libvirt_conn, tmp_path_factory):
    o = run_case(case, docker_api, libvirt_conn, tmp_path_factory)
    line = one_line(o.stderr)
    prefix = f"bench: error: {case.path}"
    assert line.startswith(prefix), line
    # FILE[:LINE]: KEY: message   (no KEY when none applies)
    m = re.match(r"(?::\d+)?: (?:(?P<key>[^\s:]+): )?", line[len(prefix) :])
    assert m, line
    if case.key is not None:
        assert m.group("key") == case.key, line


@pytest.mark.parametrize("case", params("nothing", CASES))
def test_run_starts_nothing_and_writes_nothing(case, docker_api, libvirt_conn, tmp_path_factory):
    o = run_case(case, docker_api, libvirt_conn, tmp_path_factory)
    assert o.created == set(), o.stderr
    assert o.cwd_after == [], o.stderr
    assert not o.results_exists, o.stderr


@pytest.mark.parametrize("case", params("validate", [c for c in CASES if c.validate]))
def test_validate_gives_the_same_line(case, docker_api, libvirt_conn, tmp_path_factory):
    o = run_case(case, docker_api, libvirt_conn, tmp_path_factory)
    cwd = tmp_path_factory.mktemp(f"validate-{case.id}")
    p, _ = bench("validate", str(case.path), cwd=cwd)
    assert p.returncode == 2, p.stdout + p.stderr
    assert one_line(p.stderr) == one_line(o.stderr)
    assert list(cwd.iterdir()) == []
