"""`bench ab` as a user runs it, on the fake backend (real clock, no engine): exit codes,
the verdict on stdout, the run directory as the last line, --json, --analyse."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SCENARIO = """\
name: fakeab
timeout: 5s
settle: 0s
counts: [1, 2]
repeat: {repeat}
platforms:
  - {{name: a, backend: fake, boot: 20ms}}
  - {{name: same, backend: fake, boot: 20ms}}
  - {{name: slow, backend: fake, boot: 40ms}}
  - {{name: flaky, backend: fake, boot: 20ms, silent: [1]}}
"""


def ab(tmp_path: Path, *args: str, repeat: int = 4) -> subprocess.CompletedProcess:
    scenario = tmp_path / "ab.yaml"
    scenario.write_text(SCENARIO.format(repeat=repeat))
    return subprocess.run(
        [sys.executable, "-m", "bench", "ab", str(scenario), "--out", str(tmp_path / "r"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def run_dir(p: subprocess.CompletedProcess) -> Path:
    last = Path(p.stdout.strip().splitlines()[-1])
    assert last.is_dir() and (last / "metadata.json").is_file(), p.stdout
    return last


@pytest.mark.parametrize(
    "candidate,code,verdict,gate",
    [("slow", 1, "regression", "center"), ("flaky", 1, "regression", "failures")],
)
def test_ab_regressions_exit_1(tmp_path, candidate, code, verdict, gate):
    # 10 pairs per N: the fewest a signed-rank test at 0.01 / 4 gates can decide on.
    p = ab(tmp_path, "--baseline", "a", "--candidate", candidate, repeat=10)
    assert p.returncode == code, p.stdout + p.stderr
    assert f"**{verdict.upper()} ({gate}" in p.stdout
    meta = json.loads((run_dir(p) / "metadata.json").read_text())
    assert meta["ab"]["baseline"] == "a" and len(meta["ab"]["pairs"]) == 20
    assert set(meta["warmup"]["platforms"]) == {"a", candidate}


def test_ab_json_parses_and_the_last_line_is_the_run_dir(tmp_path):
    p = ab(tmp_path, "--baseline", "a", "--candidate", "slow", "--json", repeat=10)
    assert p.returncode == 1, p.stderr
    directory = run_dir(p)
    assert p.stdout[: p.stdout.rindex(str(directory))].endswith("}\n")
    data = json.loads(p.stdout[: p.stdout.rindex(str(directory))])
    assert data["exit_code"] == 1 and data["pairs"] == 20 and data["change"] > 0.5
    assert "center N=1" in data["fired"] and data["failures"]["regression"] is False
    assert all(g["bound"] > 0 for g in data["gates"] if g["gate"] == "center")
    # Judged again from the stored run: the same verdict.
    again = subprocess.run(
        [sys.executable, "-m", "bench", "ab", "--analyse", str(directory), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert again.returncode == 1
    assert (
        json.loads(again.stdout[: again.stdout.rindex(str(directory))])["change"]
        == (data["change"])
    )


def test_ab_too_few_pairs_is_inconclusive_and_says_how_many_more(tmp_path):
    p = ab(tmp_path, "--baseline", "a", "--candidate", "same", repeat=2)
    assert p.returncode == 6, p.stderr
    assert "inconclusive" in p.stdout and "raise `repeat` by" in p.stdout


def test_ab_usage_errors_exit_2_and_start_nothing(tmp_path):
    p = ab(tmp_path, "--baseline", "a", "--candidate", "nope")
    assert p.returncode == 2
    assert "--candidate 'nope' is not a platform" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_ab_refuses_platforms_on_two_hosts(tmp_path):
    # Pairs cancel the drift both platforms see; on two machines they would measure the
    # machines' difference. Refused before anything connects (the address is never dialled).
    from bench.model.errors import UsageError
    from bench.plan.scenario import load_scenario
    from bench.runner.run import check_ab

    path = tmp_path / "two-hosts.yaml"
    path.write_text(
        "name: twohosts\nhosts: {lab2: 'ssh://root@192.0.2.1'}\ncounts: [1]\nplatforms:\n"
        "  - {name: here, backend: docker, image: busybox}\n"
        "  - {name: there, backend: docker, image: busybox, host: lab2}\n"
        "  - {name: there2, backend: docker, image: busybox, host: lab2, cpus: 1}\n"
    )
    loaded = load_scenario(path)
    with pytest.raises(UsageError, match="runs on this machine and 'there' on ssh://root@192"):
        check_ab(loaded, "here", "there")
    check_ab(loaded, "there", "there2")  # both on lab2: a same-host A/B
