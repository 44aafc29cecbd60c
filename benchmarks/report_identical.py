"""Same inputs, same outputs: what bench's read side prints and writes for stored runs,
recorded once and compared after a change (issue 22: "a run made before the change and
reported after it gives byte-identical summary.csv and containers-vs-vms.md").

    python benchmarks/report_identical.py record /tmp/before [--main /work/main/results]
    (change the code)
    python benchmarks/report_identical.py record /tmp/after  [--main /work/main/results]
    python benchmarks/report_identical.py check /tmp/before /tmp/after

Each case runs `python -m bench` (report, compare, ab --analyse, history) as a user does,
on copies of the inputs under <dir>/inputs (bench history keeps an index in a results
folder: the originals are never written), and keeps its stdout, stderr, exit code, the
files it wrote, the JUnit file and the GITHUB_STEP_SUMMARY text. The directory's own path
is replaced by <OUT> so that two records compare. `check` wants every text byte-identical
and every PNG identical in pixels (matplotlib may write other metadata bytes); it prints
each difference and exits 1 if there is one.

The cases on tests/fixtures/report-runs are always recorded (tests/test_report_identical.py
checks them against tests/fixtures/report-golden on every test run); --main adds the
stored runs of a results folder: a multi-platform A/B run, a CI job's history.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "report-runs"
PLACEHOLDER = "<OUT>"


def fixture_cases(runs: Path) -> Iterator[tuple[str, list[str]]]:
    """(case name, bench arguments) on the fixture runs copied to `runs`."""
    qs = sorted((runs / "quickstart").iterdir())
    hist = sorted((runs / "history").iterdir())
    ab = {p.name.split("-")[1]: p for p in (runs / "ab").iterdir()}
    yield "report-quickstart-one", ["report", str(qs[0])]
    yield "report-quickstart-two-hosts", ["report", str(runs / "quickstart")]
    yield "report-density", ["report", *map(str, (runs / "density").iterdir())]
    yield "report-spectrum", ["report", *map(str, (runs / "spectrum").iterdir())]
    yield "report-multi-host", ["report", *map(str, (runs / "multi-host").iterdir())]
    yield "report-history", ["report", str(runs / "history")]
    yield "report-schema1", ["report", str(runs / "schema1-quickstart")]
    yield "report-ab", ["report", str(ab["slow"])]
    yield "report-everything", ["report", str(qs[0]), str(next((runs / "spectrum").iterdir()))]
    for name, dirs in (("quickstart", qs), ("history", hist)):
        yield from _compare(f"compare-{name}", dirs)
    for name, d in sorted(ab.items()):
        yield from _ab(f"ab-{name}", d)
    yield from _history("history", runs / "history")


def main_cases(runs: Path) -> Iterator[tuple[str, list[str]]]:
    """Cases on a copy of a real results folder (/work/main/results)."""
    ab_runs = sorted((runs / "ab-check-200").iterdir())[:2]
    hist = sorted((runs / "ci-history").iterdir())
    yield "main-report-ab", ["report", str(ab_runs[0])]
    yield "main-report-history", ["report", str(runs / "ci-history")]
    yield from _compare("main-compare-history", hist)
    for i, d in enumerate(ab_runs):
        yield from _ab(f"main-ab-{i}", d)
    yield from _history("main-history", runs / "ci-history")


def _compare(name: str, dirs: list[Path]) -> Iterator[tuple[str, list[str]]]:
    args = ["compare", *map(str, dirs)]
    yield name, args
    yield f"{name}-json", [*args, "--json"]
    yield f"{name}-junit", [*args, "--junit", "{case}/junit.xml"]


def _ab(name: str, run: Path) -> Iterator[tuple[str, list[str]]]:
    args = ["ab", "--analyse", str(run)]
    yield name, args
    yield f"{name}-json", [*args, "--json"]
    yield f"{name}-junit", [*args, "--junit", "{case}/junit.xml"]


def _history(name: str, folder: Path) -> Iterator[tuple[str, list[str]]]:
    args = ["history", str(folder)]
    yield name, args
    yield f"{name}-json", [*args, "--json"]
    yield f"{name}-junit-out", [*args, "--junit", "{case}/junit.xml", "--out", "{case}/files"]


def record(out: Path, main: Path | None, in_process: bool = False) -> None:
    """Run every case; keep what it printed and wrote under out/<case>/. `in_process`:
    through typer's CliRunner in this interpreter (the unit test's way: a second each
    instead of a new interpreter's import time), else `python -m bench`."""
    out = out.resolve()
    if out.exists():
        shutil.rmtree(out)
    inputs = out / "inputs"
    shutil.copytree(FIXTURES, inputs / "fixtures")
    schema1 = REPO / "tests" / "data" / "schema1-quickstart"
    shutil.copytree(schema1, inputs / "fixtures" / "schema1-quickstart")
    cases = list(fixture_cases(inputs / "fixtures"))
    if main is not None:
        for name in ("ab-check-200", "ci-history"):
            src = main / name
            dst = inputs / "main" / name
            if name == "ab-check-200":  # 2 of its runs are enough (2.6 MB each)
                for d in sorted(src.iterdir())[:2]:
                    shutil.copytree(d, dst / d.name)
            else:
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".bench-history*"))
        cases += list(main_cases(inputs / "main"))
    for name, args in cases:
        case = out / "cases" / name
        case.mkdir(parents=True)
        args = [a.replace("{case}", str(case)) for a in args]
        if args[0] == "report":
            args += ["--out", str(case / "files")]
        # GitHub creates the job summary's file before the step runs; bench only appends.
        (case / "step-summary.md").touch()
        stdout, stderr, code = _bench(args, str(case / "step-summary.md"), in_process)
        (case / "stdout.txt").write_text(_norm(stdout, out))
        (case / "stderr.txt").write_text(_norm(stderr, out))
        (case / "exit-code.txt").write_text(f"{code}\n")
        for f in case.rglob("*"):
            if f.is_file() and f.suffix != ".png" and f.name not in ("stdout.txt", "stderr.txt"):
                f.write_bytes(_norm(f.read_text(), out).encode())
        print(f"{name}: exit {code}", file=sys.stderr)


def _bench(args: list[str], step_summary: str, in_process: bool) -> tuple[str, str, int]:
    """(stdout, stderr, exit code) of `bench ARGS`, with GITHUB_STEP_SUMMARY set."""
    env = {**os.environ, "GITHUB_STEP_SUMMARY": step_summary}
    env.pop("CI", None)
    if not in_process:
        p = subprocess.run(
            [sys.executable, "-m", "bench", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        return p.stdout, p.stderr, p.returncode
    from typer.testing import CliRunner

    from bench.cli import app

    r = CliRunner().invoke(app, args, env={"GITHUB_STEP_SUMMARY": step_summary, "CI": None})
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.stdout, r.stderr, r.exit_code


def _norm(text: str, out: Path) -> str:
    return text.replace(str(out), PLACEHOLDER)


def differences(before: Path, after: Path, text_only: bool = False) -> list[str]:
    """Every case file that differs (text: a unified diff's first lines; PNG: pixels).
    `text_only`: PNGs are left out, and report.html is compared with its embedded
    images blanked (tests/fixtures/report-golden keeps no image: a newer matplotlib or
    FreeType may draw other pixels without the report's meaning changing)."""
    problems = []

    def files(root: Path) -> set[Path]:
        found = {p.relative_to(root) for p in (root / "cases").rglob("*") if p.is_file()}
        return {p for p in found if not (text_only and p.suffix == ".png")}

    a_files, b_files = files(before), files(after)
    for rel in sorted(a_files ^ b_files):
        problems.append(f"{rel}: only in {'before' if rel in a_files else 'after'}")
    for rel in sorted(a_files & b_files):
        a, b = (before / rel).read_bytes(), (after / rel).read_bytes()
        if text_only and rel.suffix == ".html":
            a, b = without_images(a), without_images(b)
        if a == b:
            continue
        if rel.suffix == ".png":
            if not _same_pixels(before / rel, after / rel):
                problems.append(f"{rel}: the pixels differ")
            continue
        diff = difflib.unified_diff(
            a.decode(errors="replace").splitlines(),
            b.decode(errors="replace").splitlines(),
            "before",
            "after",
            lineterm="",
            n=1,
        )
        problems.append(f"{rel}:\n" + "\n".join(list(diff)[:20]))
    return problems


def without_images(html: bytes) -> bytes:
    """report.html with every embedded PNG's data blanked."""
    return re.sub(rb"base64,[A-Za-z0-9+/=]+", b"base64,", html)


def _same_pixels(a: Path, b: Path) -> bool:
    from PIL import Image, ImageChops

    with Image.open(a) as x, Image.open(b) as y:
        if x.size != y.size or x.mode != y.mode:
            return False
        return ImageChops.difference(x.convert("RGBA"), y.convert("RGBA")).getbbox() is None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run every case into DIR")
    rec.add_argument("dir", type=Path)
    rec.add_argument("--main", type=Path, help="a results folder with ab-check-200/, ci-history/")
    chk = sub.add_parser("check", help="compare two records")
    chk.add_argument("before", type=Path)
    chk.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "record":
        record(args.dir, args.main)
        return 0
    problems = differences(args.before, args.after)
    for p in problems:
        print(p)
    cases = len(list((args.before / "cases").iterdir()))
    print(f"{cases} cases: {'identical' if not problems else f'{len(problems)} files differ'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
