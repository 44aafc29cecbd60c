"""Live progress of a run on stderr (rich), fed by the runner's events.

On a terminal: a bar for the steps and one for the current step's instances (not even
imported elsewhere). Always (terminal or CI log): one line per finished or refused step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.model.records import Sample, StepRecord
from bench.model.stats import percentile
from bench.model.units import format_seconds
from bench.plan.scenario import Scenario, Step

if TYPE_CHECKING:
    from types import TracebackType

    from rich.console import Console
    from rich.progress import Progress, TaskID


class RichEvents:
    def __init__(self, console: Console, scenario: Scenario):
        self._console = console
        self._progress: Progress | None = None
        self._steps: TaskID | None = None
        self._instances: TaskID | None = None
        self._live = False
        if not console.is_terminal:
            # No bars in a pipe or a CI log (rich would draw none): nor their import,
            # part of `bench run`'s start-up (benchmarks/overhead.py).
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        # Until the first step, which brings the runner's own count (bench ab runs fewer).
        self._steps = self._progress.add_task("steps", total=len(scenario.plan()))

    def __enter__(self) -> RichEvents:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live and self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)

    def step_started(self, index: int, total: int, step: Step) -> None:
        if self._progress is None or self._steps is None:
            return
        # Shown from the first step on: an error while preparing stays one clean line.
        if not self._live:
            self._progress.__enter__()
            self._live = True
        self._progress.update(self._steps, total=total)
        label = f"{step.platform.name} N={step.n}{_added(step)} #{step.repeat + 1}"
        if self._instances is None:
            self._instances = self._progress.add_task(label, total=step.added)
        else:
            self._progress.reset(self._instances, total=step.added, description=label)

    def warmup_started(self, platform: str, instances: int) -> None:
        self._console.print(
            f"{platform}: warming up with {instances} instance(s), not measured", style="dim"
        )

    def instance_done(self, step: Step, ok: bool) -> None:
        if self._progress is not None:
            assert self._instances is not None, "an instance finishes only in a started step"
            self._progress.advance(self._instances)

    def _step_done(self) -> None:
        if self._progress is not None and self._steps is not None:
            self._progress.advance(self._steps)

    def step_refused(self, step: Step, reason: str) -> None:
        self._step_done()
        self._console.print(f"[yellow]{step.platform.name} N={step.n} refused:[/] {reason}")

    def step_finished(self, step: Step, samples: list[Sample], record: StepRecord) -> None:
        self._step_done()
        ready = [s.ready_s for s in samples if s.ok and s.ready_s is not None]
        failed = [s for s in samples if not s.ok]
        line = (
            f"{step.platform.name} N={step.n}{_added(step)} #{step.repeat + 1}: "
            f"{len(ready)}/{len(samples)} ready, "
            f"p50 {format_seconds(percentile(ready, 50))}, "
            f"p95 {format_seconds(percentile(ready, 95))}"
        )
        if failed:
            line += f" [red]({len(failed)} failed: {failed[0].error})[/]"
        if record.limit:
            line += f" [yellow]-> search ends: {record.limit_detail}[/]"
        self._console.print(line)


def _added(step: Step) -> str:
    """A ramp level's new instances (" (+512)"); nothing for a step started from zero."""
    return f" (+{step.added})" if step.kept else ""
