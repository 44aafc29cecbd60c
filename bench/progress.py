"""Live progress of a run on stderr (rich), fed by the runner's events."""

from __future__ import annotations

from typing import Any

from bench.scenario import Scenario, Step


class RichEvents:
    def __init__(self, console: Any, scenario: Scenario):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._console = console
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._steps = self._progress.add_task("steps", total=len(scenario.plan()))
        self._instances: Any = None
        self._ok = 0
        self._failed = 0

        self._live = False

    def __enter__(self) -> RichEvents:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live:
            self._progress.__exit__(*exc)

    def step_started(self, index: int, total: int, step: Step) -> None:
        # Shown from the first step on: an error while preparing stays one clean line.
        if not self._live:
            self._progress.__enter__()
            self._live = True
        label = f"{step.platform.name} N={step.n} #{step.repeat + 1}"
        self._ok = self._failed = 0
        if self._instances is None:
            self._instances = self._progress.add_task(label, total=step.n)
        else:
            self._progress.reset(self._instances, total=step.n, description=label)

    def instance_done(self, step: Step, ok: bool) -> None:
        if ok:
            self._ok += 1
        else:
            self._failed += 1
        self._progress.advance(self._instances)

    def step_refused(self, step: Step, reason: str) -> None:
        self._progress.advance(self._steps)
        self._progress.console.print(
            f"[yellow]{step.platform.name} N={step.n} refused:[/] {reason}"
        )

    def step_finished(self, step: Step, samples: list[dict[str, Any]]) -> None:
        self._progress.advance(self._steps)
        failed = [s for s in samples if not s["ok"]]
        if failed:
            self._progress.console.print(
                f"[red]{step.platform.name} N={step.n}: {len(failed)} of {step.n} not ready[/]"
                f" ({failed[0]['error']})"
            )
