"""The live progress counts the steps the runner says it will run (bench ab runs two
platforms of a scenario of more), not the scenario's whole plan."""

import io

from rich.console import Console

from bench.plan.scenario import parse_scenario
from bench.report.progress import RichEvents

THREE = (
    "name: s\ncounts: [1, 2]\nrepeat: 3\nplatforms:\n"
    "  - {name: a, backend: docker, image: busybox}\n"
    "  - {name: b, backend: docker, image: busybox}\n"
    "  - {name: c, backend: docker, image: busybox}\n"
)


def test_the_steps_bar_takes_the_runners_total():
    sc = parse_scenario(THREE)
    with RichEvents(Console(file=io.StringIO(), force_terminal=True), sc) as events:
        assert events._progress is not None
        (steps,) = events._progress.tasks
        assert steps.total == 18  # 3 platforms x 2 N x 3 repeats, until a step says
        events.step_started(0, 12, sc.plan()[0])  # an A/B run of two of them: 12
        assert events._progress.tasks[0].total == 12


def test_a_pipe_gets_the_step_lines_without_bars():
    sc = parse_scenario(THREE)
    out = io.StringIO()
    with RichEvents(Console(file=out, width=200), sc) as events:
        assert events._progress is None  # rich.progress not even imported for a pipe
        step = sc.plan()[0]
        events.step_started(0, 18, step)
        events.instance_done(step, True)
        events.step_refused(step, "over the memory limit")
    assert out.getvalue() == "a N=1 refused: over the memory limit\n"
