"""What CI systems read of a verdict: a JUnit XML file (`--junit FILE`) and GitHub's job
summary (the file named by GITHUB_STEP_SUMMARY). Shared by `bench ab`, `bench compare`
and, later, `bench history`: each command turns its verdict into Markdown and a list
of `JUnitCase` (one per group it judges) and calls `publish`.

    from bench.report.ci_output import JUnitCase, publish
    cases = [JUnitCase("container N=1", "bench.compare", FAILED, "+23% (p = 0.001)")]
    publish(markdown, cases, junit=Path("verdict.xml"), suite="bench compare", warn=print)

JUnit: one <testsuite> in a <testsuites> root, a <testcase> per group: a <failure> on a
regression, <skipped> when inconclusive, nothing when it passed; GitLab, Jenkins and
the GitHub test-report actions show these as tests. Written with ElementTree (names
come from scenarios and results folders: never pasted into markup) after the
characters XML 1.0 cannot carry (control characters, lone surrogates) are replaced by
visible escapes, and renamed into place (a reader never sees half a file).

Job summary: GitHub Actions sets GITHUB_STEP_SUMMARY to a file it renders as the job's
summary; its value is input, so the file is opened append-only, without following a
link (O_NOFOLLOW), without blocking on a FIFO, never created, and written only when it
is a regular file. A refusal is one warning line; the verdict and the exit code stand.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: the commands import this module, not the reverse
    from bench.judge.ab import AbResult
    from bench.judge.compare import Comparison
    from bench.judge.history import History

PASSED = "passed"
FAILED = "failure"
SKIPPED = "skipped"

SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


@dataclass(frozen=True)
class JUnitCase:
    """One group's verdict as a test: `name` ("container N=1"), `classname` (the
    command: "bench.compare"), `status` (PASSED, FAILED or SKIPPED), a one-line
    `message` and longer `details` (the group's advice or why)."""

    name: str
    classname: str
    status: str
    message: str = ""
    details: str = ""

    def __post_init__(self) -> None:
        if self.status not in (PASSED, FAILED, SKIPPED):
            raise ValueError(f"JUnitCase status {self.status!r}: use passed, failure or skipped")


# XML 1.0 allows tab, newline, carriage return and most of Unicode; not the other C0
# controls, lone surrogates, U+FFFE or U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """`text` with every character XML cannot carry shown as \\xNN or \\uNNNN."""

    def esc(m: re.Match[str]) -> str:
        c = ord(m.group())
        return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"

    return _NOT_XML.sub(esc, str(text))


def junit_xml(suite: str, cases: Sequence[JUnitCase]) -> bytes:
    """The JUnit XML document (UTF-8, with its declaration)."""
    import xml.etree.ElementTree as ET

    failures = sum(c.status == FAILED for c in cases)
    skipped = sum(c.status == SKIPPED for c in cases)
    root = ET.Element(
        "testsuites", tests=str(len(cases)), failures=str(failures), skipped=str(skipped)
    )
    node = ET.SubElement(
        root,
        "testsuite",
        name=xml_text(suite),
        tests=str(len(cases)),
        failures=str(failures),
        skipped=str(skipped),
        errors="0",
    )
    for c in cases:
        case = ET.SubElement(
            node, "testcase", name=xml_text(c.name), classname=xml_text(c.classname)
        )
        case.set("time", "0")
        if c.status != PASSED:
            tag = "failure" if c.status == FAILED else "skipped"
            child = ET.SubElement(case, tag, message=xml_text(c.message))
            if c.status == FAILED:
                child.set("type", "regression")
            child.text = xml_text(c.details) if c.details else None
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_junit(path: Path, suite: str, cases: Sequence[JUnitCase]) -> None:
    """Write the JUnit file: a temporary file beside it, then renamed over it."""
    data = junit_xml(suite, cases)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # a report for others to read, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_step_summary(markdown: str, environ: dict[str, str] | None = None) -> str | None:
    """Append `markdown` to the file GITHUB_STEP_SUMMARY names, when it is set. Returns
    None when written or not set, else the one-line reason it was not."""
    env = os.environ if environ is None else environ
    name = env.get(SUMMARY_ENV)
    if not name:
        return None
    flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags)
    except OSError as e:
        why = "it is a symbolic link" if os.path.islink(name) else e.strerror
        return f"{SUMMARY_ENV}={name!r} not written: {why}"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return f"{SUMMARY_ENV}={name!r} not written: not a regular file"
        data = (markdown if markdown.endswith("\n") else markdown + "\n").encode()
        view = memoryview(
            b"\n" + data
        )  # a blank line: the summary of another step may end without one
        while view:
            view = view[os.write(fd, view) :]
    except OSError as e:
        return f"{SUMMARY_ENV}={name!r} not written: {e.strerror}"
    finally:
        os.close(fd)
    return None


def publish(
    markdown: str,
    cases: Sequence[JUnitCase],
    junit: Path | None,
    suite: str = "bench",
    warn: Callable[[str], None] | None = None,
) -> None:
    """Write the JUnit file when `junit` is given, and append `markdown` to GitHub's
    job summary when GITHUB_STEP_SUMMARY is set (a refusal goes to `warn`). A JUnit
    file that cannot be written raises OSError: the user asked for it."""
    if junit is not None:
        write_junit(junit, suite, cases)
    problem = append_step_summary(markdown)
    if problem and warn is not None:
        warn(problem)


# --- the verdicts of bench ab and bench compare as test cases -----------------------------


def ab_cases(result: AbResult) -> list[JUnitCase]:
    """A `bench.judge.ab.AbResult`: one case per N (failed when a gate at that N fired,
    skipped when the run is inconclusive), and one for the failures gate."""
    from bench.judge import verdict as v

    r = result
    cls = "bench.ab"
    out = []
    for n in r.counts:
        gates = [g for g in r.gates if g.n == n]
        fired = [g for g in gates if g.verdict == v.REGRESSION]
        center = next(g for g in gates if g.kind == "center")
        what = f"change {v.pct(center.test.change)}, MDE {v.pct(center.test.mde)}"
        name = f"{r.candidate} vs {r.baseline} N={n}"
        if fired:
            gate_list = ", ".join(
                f"{g.kind} {v.pct(g.test.change)}, p (Holm) {g.p_holm:.2g}" for g in fired
            )
            out.append(JUnitCase(name, cls, FAILED, f"regression ({gate_list})", what))
        elif r.verdict == v.INCONCLUSIVE:
            out.append(JUnitCase(name, cls, SKIPPED, "inconclusive", r.advice() or what))
        else:
            out.append(JUnitCase(name, cls, PASSED, center.verdict, what))
    f = r.failures
    why = f.why(r.baseline, r.candidate)
    name = f"{r.candidate} vs {r.baseline} failures"
    out.append(
        JUnitCase(name, cls, FAILED if f.regression else PASSED, why if f.regression else "", why)
    )
    return out


def compare_cases(result: Comparison) -> list[JUnitCase]:
    """A `bench.judge.compare.Comparison`: one case per (platform, N)."""
    from bench.judge import verdict as v

    out = []
    for g in result.groups:
        t = g.test
        what = "no test" if t is None else f"change {v.pct(t.change)}, MDE {v.pct(t.mde)}"
        name = f"{g.platform} N={g.n}"
        if g.verdict == v.REGRESSION:
            msg = f"regression ({', '.join(g.fired)}): {what}"
            out.append(JUnitCase(name, "bench.compare", FAILED, msg, g.advice or what))
        elif g.verdict == v.INCONCLUSIVE:
            out.append(JUnitCase(name, "bench.compare", SKIPPED, "inconclusive", g.advice or what))
        else:
            out.append(JUnitCase(name, "bench.compare", PASSED, g.verdict, what))
    return out


def history_cases(result: History) -> list[JUnitCase]:
    """A `bench.judge.history.History`: one case per series (platform, N)."""
    from bench.judge import history as h

    out = []
    for s in result.series:
        what = "no change point" if s.change is None else f"newest segment {s.change:+.1%}"
        if s.verdict == h.REGRESSION:
            start = s.points[s.segments[-1].start].run_id
            msg = f"regression since {start}"
            out.append(JUnitCase(s.name, "bench.history", FAILED, msg, what))
        elif s.verdict == h.TOO_SHORT:
            msg = f"too short: {len(s.points)} runs of {h.MIN_RUNS} needed"
            out.append(JUnitCase(s.name, "bench.history", SKIPPED, msg, msg))
        else:
            out.append(JUnitCase(s.name, "bench.history", PASSED, s.verdict, what))
    return out
