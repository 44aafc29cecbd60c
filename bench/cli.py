"""The `bench` command line. Thin: each command parses, calls one library function,
prints. Heavy modules (pydantic models, SDKs, pandas) load inside the commands, so
`bench --help` answers at once.

Exit codes (bench.model.errors.ExitCode): 0 ok, 1 regression found by `compare` or `ab`,
2 bad usage or scenario, 3 engine unreachable, 4 run finished with failed
instances, 5 other error, 6 inconclusive (`compare` or `ab`: too little evidence either
way; more repeats or baseline runs would decide), 130 interrupted.
"""

from __future__ import annotations

import functools
import gc
import inspect
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperCommand

from bench.model.errors import BenchError, ExitCode, UsageError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rich.console import Console

    # typer 0.29 carries its own click: its context and parameters are typer._click's.
    from typer._click import Context as ClickContext
    from typer._click import Parameter

    from bench.backends.base import Options
    from bench.judge.ab import AbResult
    from bench.plan.scenario import LoadedScenario
    from bench.report.ci_output import JUnitCase
    from bench.runner.run import RunOutcome


def _flags_show_no_type() -> None:
    """typer 0.29 prints `<bool>` after every flag in --help (`--dry-run <bool>`, even
    `--help <bool>`), as if it took a value; a flag takes none, so show nothing there."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: ClickContext) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_show_no_type()
app = typer.Typer(
    name="bench",
    help="Measure containers against virtual machines on this host: boot time, memory, "
    "disk, density. Start with `bench doctor`, then `bench run scenarios/quickstart.yaml`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
images_app = typer.Typer(help="Build the bench image pair (offline, no registry).")
app.add_typer(images_app, name="images")

_state = {"debug": bool(os.environ.get("BENCH_DEBUG"))}


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _stdout() -> Console:
    from rich.console import Console

    # Piped into a file or a CI log, a table must not be squeezed into 80 columns.
    wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
    return Console(highlight=False, width=wide)


def _backend_options_command(command: str) -> type[TyperCommand]:
    """A command that also takes the options the registered backends declare for it
    (Backend.cli_options: --docker-host, --libvirt-uri, ...), so a new backend brings
    its options without an edit here. They are loaded only when this command runs or
    shows its help, and reach it as one dict: `_backend_options(ctx)`."""

    class WithBackendOptions(TyperCommand):
        def get_params(self, ctx: ClickContext) -> list[Parameter]:
            params = super().get_params(ctx)
            # Before --help, which click puts last.
            n = len(params) - (self.get_help_option(ctx) is not None)
            return [*params[:n], *_backend_params(command), *params[n:]]

        def invoke(self, ctx: ClickContext) -> object:
            from bench.backends import cli_options

            keys = [p.name for p in _backend_params(command)]
            options = {k: ctx.params.pop(k, None) for k in keys}
            # An address is refused here, before any engine is asked (bench.model.addresses).
            for opt in cli_options(command):
                values = options.get(opt.key)
                for value in values if isinstance(values, (list, tuple)) else [values]:
                    if opt.check is not None and value is not None:
                        try:
                            opt.check(value)
                        except ValueError as e:
                            raise UsageError(f"{opt.flag} {e}") from None
            ctx.meta["bench.backend_options"] = options
            return super().invoke(ctx)

    return WithBackendOptions


@functools.cache
def _backend_params(command: str) -> list[Parameter]:
    """Click parameters for the backends' options, built by typer from a signature."""
    from bench.backends import cli_options

    params = []
    for opt in cli_options(command):
        kind: object = bool if opt.is_flag else list[str] | None if opt.multiple else str | None
        info = typer.Option(opt.flag, help=opt.help, metavar=opt.metavar, hidden=opt.hidden)
        params.append(
            inspect.Parameter(
                opt.key,
                inspect.Parameter.KEYWORD_ONLY,
                default=False if opt.is_flag else None,
                annotation=Annotated[kind, info],
            )
        )

    def options(**_values: object) -> None: ...

    options.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    holder = typer.Typer(add_completion=False)
    holder.command()(options)
    return list(typer.main.get_command(holder).params)


def _backend_options(ctx: typer.Context) -> Options:
    return ctx.meta["bench.backend_options"]


# Options `run` and `ab` share: both write a run directory.
OutDir = Annotated[Path, typer.Option("--out", help="Directory that receives results/<run-id>/.")]
# Options `ab` and `compare` share: what slow-down counts.
Threshold = Annotated[
    str,
    typer.Option(
        "--threshold", metavar="PERCENT", help="Smallest slow-down that counts, e.g. 10%."
    ),
]
# Options `ab` and `compare` share: what CI systems read.
Junit = Annotated[
    Path | None,
    typer.Option(
        "--junit",
        metavar="FILE",
        help="Also write the verdict as JUnit XML: a test case per group, failed on a "
        "regression, skipped when inconclusive.",
    ),
]
RunName = Annotated[
    str | None,
    typer.Option("--name", metavar="NAME", help="Prefix of the run id (default: scenario name)."),
]


def _print_version(value: bool) -> None:
    if value:
        from bench import __version__

        print(f"bench {__version__}")
        raise typer.Exit()


def _check_junit(path: Path | None) -> None:
    """Before the work: a --junit FILE whose folder is missing would fail after it."""
    if path is not None and not path.parent.is_dir():
        raise UsageError(f"--junit {path}: folder {path.parent} does not exist")
    if path is not None and path.is_dir():
        raise UsageError(f"--junit {path}: a folder; name a file such as {path}/bench.xml")


def _publish(markdown: str, cases: Sequence[JUnitCase], junit: Path | None, suite: str) -> None:
    """The verdict for CI: --junit FILE, and GitHub's job summary when its variable is
    set (bench.report.ci_output)."""
    from bench.report.ci_output import publish

    err = _stderr()
    publish(
        markdown,
        cases,
        junit,
        suite,
        warn=lambda m: err.print(f"warning: {m}", markup=False, soft_wrap=True),
    )


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            expose_value=False,
            help="Print bench's version and exit.",
        ),
    ] = False,
) -> None:
    if debug:
        _state["debug"] = True
    if ctx.invoked_subcommand != "run":  # which resumes collection after its own imports
        _collect_from_now()


def _collect_from_now() -> None:
    """Garbage collection on again (main() turned it off for the start-up); what exists
    now lives until the process ends, so no collection walks it again (gc.freeze)."""
    gc.freeze()
    gc.enable()


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    out: OutDir = Path("results"),
    name: RunName = None,
    hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            metavar="HOST",
            help="Run the whole scenario on this host (a name from its hosts:, `local` or "
            "ssh://USER@HOST[:PORT]); repeat for several, run in parallel.",
        ),
    ] = None,
) -> None:
    """Run a scenario on the real engines and store every raw sample.

    Prints live progress, then a summary per platform and N; the last line is the run
    directory. Exit 4 if some instances never became ready (they are recorded).
    """
    from rich.markup import escape

    from bench.judge.anomalies import anomaly_notes
    from bench.judge.summary import density_results, memory_disagreements, summarize
    from bench.model.results import load_run
    from bench.plan.scenario import load_scenario, on_hosts
    from bench.report.views import summary_table

    _collect_from_now()
    loaded = load_scenario(scenario)
    if hosts:
        loaded = on_hosts(loaded, hosts)
    err = _stderr()
    outcome = _run_with_progress(loaded, out, name, err)
    stored = load_run(outcome.directory, columns=True)  # a run may hold a million samples
    rows = summarize(stored.columns, stored.steps)
    console = _stdout()
    console.print(
        summary_table(rows, stored.metadata, density_results(stored.steps, stored.part("searches")))
    )
    for line in memory_disagreements(rows) + anomaly_notes(stored.columns):
        console.print(f"[yellow]note:[/] {escape(line)}")
    print(outcome.directory)
    if outcome.failures:
        raise typer.Exit(ExitCode.INSTANCE_FAILURES)


@app.command()
def ab(
    scenario: Annotated[
        Path | None, typer.Argument(help="Scenario YAML file (not with --analyse).")
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline", metavar="PLATFORM", help="The scenario's platform to compare against."
        ),
    ] = None,
    candidate: Annotated[
        str | None,
        typer.Option("--candidate", metavar="PLATFORM", help="The scenario's platform under test."),
    ] = None,
    analyse: Annotated[
        Path | None,
        typer.Option("--analyse", metavar="RUN_DIR", help="Judge a stored A/B run again."),
    ] = None,
    threshold: Threshold = "10%",
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level.")] = 0.01,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of Markdown.")] = False,
    out: OutDir = Path("results"),
    name: RunName = None,
    junit: Junit = None,
) -> None:
    """Run two platforms of a scenario side by side; judge the candidate.

    After a warm-up, their steps run in counterbalanced pairs (AB, BA, ...),
    every N in every repeat; the step pair is the unit. A regression: per N, a
    center slow-down above half the threshold or a p95 slow-down above the
    threshold (signed-rank, permutation; p < alpha after Holm), or more failed
    instances (Fisher exact); the table names the gate that fired.

    Prints the verdict (Markdown, or --json); the last line is the run directory.
    With GITHUB_STEP_SUMMARY set, the Markdown is also appended to that file.
    Exit 0 no regression, 1 regression, 6 inconclusive (it says how many
    more repeats would decide), 2 usage error, 3 engine unreachable.
    """
    from bench.judge.ab import analyse_ab
    from bench.judge.compare import parse_threshold
    from bench.model.results import load_run

    fraction = parse_threshold(threshold)  # before a long run, not after it
    _check_junit(junit)
    err = _stderr()
    run_dir = _ab_run_dir(scenario, analyse, baseline, candidate, out, name, err)
    result = analyse_ab(load_run(run_dir), fraction, alpha, baseline=baseline, candidate=candidate)
    _print_ab(result, as_json, junit, err)
    print(run_dir)
    raise typer.Exit(int(result.exit_code))


def _ab_run_dir(
    scenario: Path | None,
    analyse: Path | None,
    baseline: str | None,
    candidate: str | None,
    out: Path,
    name: str | None,
    err: Console,
) -> Path:
    """The A/B run to judge: the stored one --analyse names, or one run now."""
    if analyse is not None:
        if scenario is not None:
            raise UsageError("give a scenario to run or --analyse RUN_DIR, not both")
        return analyse
    if scenario is None or baseline is None or candidate is None:
        raise UsageError(
            "usage: bench ab SCENARIO --baseline P --candidate Q (or --analyse RUN_DIR)"
        )
    from bench.plan.scenario import load_scenario
    from bench.runner.run import check_ab

    loaded = load_scenario(scenario)
    check_ab(loaded, baseline, candidate)
    return _run_with_progress(loaded, out, name, err, ab=(baseline, candidate)).directory


def _run_with_progress(
    loaded: LoadedScenario,
    out: Path,
    name: str | None,
    err: Console,
    ab: tuple[str, str] | None = None,
) -> RunOutcome:
    """bench.runner.run.run_scenario with live progress, warnings and notes on stderr."""
    from bench.report.progress import RichEvents
    from bench.runner.run import run_scenario

    with RichEvents(err, loaded.scenario) as events:
        return run_scenario(
            loaded,
            out,
            name=name,
            events=events,
            warn=lambda m: err.print(f"[yellow]warning:[/] {m}"),
            say=lambda m: err.print(m, style="dim"),
            ab=ab,
        )


def _print_ab(result: AbResult, as_json: bool, junit: Path | None, err: Console) -> None:
    """The verdict on stdout (Markdown or JSON), in the CI's summary and JUnit file, its
    warnings and advice on stderr."""
    from bench.report.ci_output import ab_cases
    from bench.report.render_json import verdict_json
    from bench.report.render_markdown import ab_markdown
    from bench.report.render_terminal import print_verdict, print_warnings

    print_warnings(result.warnings, err)
    markdown = ab_markdown(result)
    print_verdict(markdown, verdict_json(result) if as_json else None)
    _publish(markdown, ab_cases(result), junit, f"bench ab {result.run_id}")
    advice = result.advice()
    if advice and as_json:  # the Markdown says it already
        err.print(advice, soft_wrap=True)


@app.command()
def validate(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="No network, no engine: check the file and this host's memory only.",
        ),
    ] = False,
) -> None:
    """Check a scenario and print its plan. Starts and builds nothing.

    Also checks it against each platform's host: memory per instance, and (unless
    --offline) that each engine answers and has the images the scenario names, as
    `bench run` would.
    """
    from bench.plan.scenario import load_scenario
    from bench.report.views import plan_table
    from bench.runner.run import preflight

    loaded = load_scenario(scenario)
    left_out = preflight(loaded, engines=not offline)
    out = _stdout()
    out.print(plan_table(loaded.scenario))
    for slot, why in left_out.items():
        out.print(f"[yellow]left out:[/] platform {slot} (optional): {why}", soft_wrap=True)
    if offline:
        out.print(
            "Checked: the file's keys and values, memory per instance against this host. "
            "Not checked (--offline: no network, no engine): other hosts' memory, that each "
            "engine answers and has the images; `bench validate` without --offline does."
        )
    else:
        out.print("Checked: the file, each engine and its images, memory against each host.")


@images_app.command("build", cls=_backend_options_command("images"))
def images_build(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Image pair to build.")] = "busybox",
    kernel: Annotated[
        Path | None,
        typer.Option("--kernel", help="Guest kernel (default: $BENCH_KERNEL or /boot/vmlinuz-*)."),
    ] = None,
) -> None:
    """Build the docker image and the VM kernel+initramfs from ONE busybox rootfs."""
    from bench.backends import backend_classes
    from bench.machines import images

    art = images.build_rootfs(name, kernel)
    m = art.manifest
    out = _stdout()
    err = _stderr()
    out.print(f"rootfs   {m['busybox']}, sha256 {m['rootfs_sha256'][:16]}…")
    # Each engine's part; one engine failing does not keep the others from theirs.
    failed: BenchError | None = None
    for cls in backend_classes():
        try:
            lines = cls.build_images(
                name, _backend_options(ctx), say=lambda m: err.print(m, style="dim")
            )
        except BenchError as e:
            failed = failed or e
            continue
        for label, text in lines:
            out.print(f"{label:<8} {text}")
    if failed is not None:
        raise failed


@app.command(cls=_backend_options_command("doctor"))
def doctor(ctx: typer.Context) -> None:
    """Check this host: engines reachable, KVM or TCG only (by a probe boot), images built.

    Exit 0 when all is well, 3 when an engine is unreachable, 5 for anything else.
    """
    from bench.commands.doctor import run_checks

    err = _stderr()
    checks = run_checks(_backend_options(ctx), say=lambda m: err.print(m, style="dim"))
    out = _stdout()
    for c in checks:
        mark = "[red]FAIL[/]" if not c.ok else "[yellow]warn[/]" if c.warn else "[green]ok[/]  "
        out.print(f"{mark} {c.name:<13} {c.detail}")
        if (c.warn or not c.ok) and c.fix:
            out.print(f"      {'':<13} fix: {c.fix}")
    if any(c.engine and not c.ok for c in checks):
        raise typer.Exit(ExitCode.ENGINE_UNAVAILABLE)
    if not all(c.ok for c in checks):
        raise typer.Exit(ExitCode.ERROR)


@app.command(cls=_backend_options_command("clean"))
def clean(
    ctx: typer.Context,
    run_id: Annotated[
        str | None,
        typer.Option("--run", metavar="RUN_ID", help="Only what this run id left behind."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List, remove nothing.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Also remove what a still-running bench owns.")
    ] = False,
    scenario: Annotated[
        Path | None,
        typer.Option(
            "--scenario",
            metavar="FILE",
            help="Search the engines this scenario's platforms use, on every host it names, "
            "instead of this machine's defaults.",
        ),
    ] = None,
    hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            metavar="HOST",
            help="With --scenario: the hosts it was run on with `bench run --host`.",
        ),
    ] = None,
) -> None:
    """Remove every container, domain and overlay file that bench created and left over."""
    from bench.commands.clean import check_run_id
    from bench.commands.clean import clean as do_clean
    from bench.plan.leftovers import default_backends, scenario_backends

    check_run_id(run_id)  # before any engine is asked
    if scenario is not None:
        from bench.plan.scenario import load_scenario, on_hosts

        loaded = load_scenario(scenario)
        backends = scenario_backends(on_hosts(loaded, hosts) if hosts else loaded)
    elif hosts:
        raise UsageError("--host needs --scenario: the names are the scenario's hosts")
    else:
        backends = default_backends(_backend_options(ctx))
    report = do_clean(backends, run_id, dry_run, force)
    out = _stdout()
    verb = "would remove" if dry_run else "removed"
    for left in report.removed:
        out.print(f"{verb} {left.backend} {left.kind} {left.name}")
    for left, why in report.failed:
        out.print(f"[red]could not remove[/] {left.backend} {left.kind} {left.name}: {why}")
    for run, pid in sorted({(x.run_id, x.owner_pid) for x in report.live}, key=str):
        n = sum(1 for x in report.live if x.run_id == run)
        out.print(
            f"[yellow]left alone:[/] {n} of run {run}, which is still running (pid {pid}); "
            "--force removes them anyway"
        )
    for run, host in sorted({(x.run_id, x.owner_host) for x in report.remote}, key=str):
        n = sum(1 for x in report.remote if x.run_id == run)
        out.print(
            f"[yellow]left alone:[/] {n} of run {run}, owned by bench on host {host} (this "
            "host cannot tell whether it still runs); --force removes them anyway"
        )
    for msg in report.unreachable:
        out.print(f"[yellow]skipped:[/] {msg}")
    out.print(f"{len(report.removed)} {verb}, {len(report.failed)} failed")
    if report.failed:
        raise typer.Exit(ExitCode.ERROR)


@app.command()
def report(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(help="Run folders, or results folders whose runs are taken."),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output directory (default: reports/<run-id or name>/)."),
    ] = None,
) -> None:
    """Tables (CSV, Markdown), PNG plots and one self-contained report.html from stored runs.

    Reads only the results directories, never an engine. The last line is the report
    directory.
    """
    from bench.report import build_report
    from bench.report.render_terminal import print_report

    print_report(build_report(run_dirs, out), _stderr())


@app.command()
def compare(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(
            help="One or more baseline results/<run-id>/ dirs, then the current one (last).",
        ),
    ],
    threshold: Threshold = "10%",
    metric: Annotated[
        str, typer.Option("--metric", metavar="FIELD", help="Sample field to compare.")
    ] = "ready_s",
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level.")] = 0.01,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of Markdown.")] = False,
    junit: Junit = None,
) -> None:
    """Compare the last run with the baseline runs before it, per (platform, N).

    Runs are the unit: the current run is tested against the spread of the
    baseline runs (with one, or with baselines run back to back in one session,
    a drift of 10% is assumed, so only a gross slow-down is significant). A
    regression is p < alpha (Holm over groups) and a change above half the
    threshold, or a larger share of failed instances (Fisher exact). For a change
    you can run side by side, `bench ab` sees far smaller changes.

    Prints Markdown (for CI job summaries; also appended to GITHUB_STEP_SUMMARY
    when set) or JSON; warnings go to stderr. Exit 0 none, 1 regression,
    6 inconclusive (too little evidence: more baseline runs needed), 2 usage error.
    """
    from bench.judge.compare import compare_runs, parse_threshold
    from bench.model.results import load_run
    from bench.report.ci_output import compare_cases
    from bench.report.render_json import verdict_json
    from bench.report.render_markdown import compare_markdown
    from bench.report.render_terminal import print_verdict, print_warnings

    _check_junit(junit)
    if len(run_dirs) < 2:
        raise UsageError("give one or more baseline run directories, then the current one")
    *baselines, current = run_dirs
    result = compare_runs(
        [load_run(b) for b in baselines],
        load_run(current),
        metric,
        parse_threshold(threshold),
        alpha,
    )
    err = _stderr()
    print_warnings(result.warnings, err)
    markdown = compare_markdown(result)
    print_verdict(markdown, verdict_json(result) if as_json else None)
    _publish(markdown, compare_cases(result), junit, f"bench compare {result.current}")
    if result.exit_code == ExitCode.INCONCLUSIVE:
        err.print(f"inconclusive: {result.inconclusive_message()}", soft_wrap=True)
    raise typer.Exit(int(result.exit_code))


@app.command()
def history(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders, or results folders whose runs are taken (results/).",
        ),
    ],
    scenario: Annotated[
        str | None,
        typer.Option("--scenario", metavar="NAME", help="Only the runs of this scenario."),
    ] = None,
    threshold: Threshold = "10%",
    metric: Annotated[
        str, typer.Option("--metric", metavar="FIELD", help="Sample field to follow.")
    ] = "ready_s",
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of Markdown.")] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="DIR", help="Also write history.md, .json and .png here."),
    ] = None,
    junit: Junit = None,
) -> None:
    """Judge a CI job's runs as a time series, per (platform, N).

    Each run's level (the mean log metric, as compare computes it) in the order
    the runs started; change points by Page-Hinkley tests (river), an online
    detector. Exit 1 when the newest runs begin a segment slower than the one
    before by more than half the threshold, found by the job of one of the
    newest 2 runs; 6 while a series has too few runs to judge (8), 0 otherwise,
    2 usage error. A
    results folder keeps an index of its runs' levels (.bench-history.sqlite),
    so a long history is read quickly. Warns when the runs differ in what must
    match (host, engine versions, scenario), naming the run each changed at.
    """
    from bench.judge.compare import parse_threshold
    from bench.judge.history import read_history
    from bench.report import write_history
    from bench.report.ci_output import history_cases
    from bench.report.render_json import verdict_json
    from bench.report.render_markdown import history_markdown
    from bench.report.render_terminal import print_verdict, print_warnings

    _check_junit(junit)
    result = read_history(paths, metric, parse_threshold(threshold), scenario)
    err = _stderr()
    print_warnings(result.warnings, err, as_text=True)
    markdown = history_markdown(result)
    print_verdict(markdown, verdict_json(result) if as_json else None)
    if out is not None:
        for f in write_history(result, out):
            err.print(str(f), markup=False, soft_wrap=True)
    _publish(markdown, history_cases(result), junit, f"bench history {result.metric}")
    raise typer.Exit(int(result.exit_code))


@app.command()
def schema() -> None:
    """Print the JSON Schema of scenario files, for editors' completion and inline errors.

    Generated from the models that validate scenarios, with each key's meaning and
    default. Save it (`bench schema > bench-scenario.schema.json`) and name it on a
    scenario's first line: `# yaml-language-server: $schema=bench-scenario.schema.json`.
    `bench validate` stays the judge: some rules (counts or density, unique names) are
    beyond a schema.
    """
    import json

    from bench.plan.schema import scenario_schema

    print(json.dumps(scenario_schema(), indent=2))


def _paragraphs(text: str) -> str:
    """Docstring text with each paragraph on one line. In rich markup mode typer keeps
    the line breaks of every paragraph after the first, so breaks made to fit the
    source file's width would show as ragged lines at any terminal width; rich wraps
    a one-line paragraph to the terminal instead."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


# Last, after every command is registered (typer reads the help when it builds click's
# commands, at the first call of the app).
for _typer in (app, images_app):
    for _info in _typer.registered_commands:
        if _info.help is None and _info.callback is not None and _info.callback.__doc__:
            _info.help = _paragraphs(_info.callback.__doc__)


def main() -> None:
    # Start-up makes most of the objects a process keeps (modules, classes, pydantic
    # schemas: about 70,000 after `bench run`'s imports); collecting while they are
    # made walks the same ones again and again, 30-50 ms of `bench run`'s start-up
    # here (more on a loaded host). Collection resumes once a command is chosen
    # (`bench run`: after its imports).
    gc.disable()
    try:
        _main()
    finally:
        # The process ends here. Its last garbage collections, as the interpreter
        # shuts down, walk every object it made (about 70,000 after a `bench run`):
        # 0.2-0.5 s of its wall time here, for memory the OS takes back anyway. Frozen,
        # they are skipped; files are still flushed and closed, atexit handlers still run.
        gc.freeze()


def _main() -> None:
    # Typer handles its own usage errors (exit 2); bench's expected errors are one line.
    try:
        app()
    except BenchError as e:
        if _state["debug"]:
            raise
        print(f"bench: error: {e}", file=sys.stderr)
        sys.exit(int(e.exit_code))
    except Exception as e:  # not foreseen: still one line, and never exit 1 (regression)
        if _state["debug"]:
            raise
        from bench.model.errors import first_line

        print(
            f"bench: error: {type(e).__name__}: {first_line(e)} (run with --debug for the "
            "traceback)",
            file=sys.stderr,
        )
        sys.exit(int(ExitCode.ERROR))
