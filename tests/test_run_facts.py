"""bench.runner.run: the host facts are gathered while the first step runs, once per run."""

from __future__ import annotations

import json
import threading

from bench.backends.fake import FakeBackend
from bench.plan.scenario import LoadedScenario, parse_scenario
from bench.runner import NoEvents
from bench.runner.run import run_scenario
from tests.helpers import FakeHost

TEXT = (
    "name: f\nsettle: 0s\ntimeout: 5s\ncounts: [2, 2]\nwarmup: 0\n"
    "platforms:\n  - {name: a, backend: fake, boot: 50ms}\n  - {name: b, backend: fake}\n"
)


def test_host_facts_are_read_once_in_the_background_while_the_first_step_runs(tmp_path):
    calls: list[tuple[str, bool]] = []
    first_step = threading.Event()

    class SlowHost(FakeHost):
        def describe(self):
            # A remote host's round trips: the facts come only once the first step has
            # started. Were they gathered before it, this would wait in vain.
            calls.append((threading.current_thread().name, first_step.wait(timeout=5)))
            return {**super().describe(), "facts": "yes"}

    host = SlowHost(lambda: [])

    class Events(NoEvents):
        def step_started(self, index, total, step):
            first_step.set()

    sc = parse_scenario(TEXT)
    outcome = run_scenario(
        LoadedScenario(sc, None, TEXT),
        tmp_path,
        events=Events(),
        factory=lambda p: FakeBackend(p, host=host),
    )
    # One host for both platforms: asked once, off the main thread, and the first step
    # did not wait for it.
    assert len(calls) == 1
    name, saw_first_step = calls[0]
    assert name.startswith("bench-facts") and saw_first_step
    meta = json.loads((outcome.directory / "metadata.json").read_text())
    facts = meta["hosts"]["fakehost"]
    assert list(meta["hosts"]) == ["fakehost"]
    assert {k: facts[k] for k in ("hostname", "mem_total_bytes", "facts", "rtt_s")} == {
        "hostname": "fakehost",
        "mem_total_bytes": 2 * 2**30,
        "facts": "yes",
        "rtt_s": 0.0,
    }
    assert set(facts["engines"]) == {"a", "b"}  # each host's engines, next to its facts
    assert meta["host"]["facts"] == "yes" and meta["status"] == "complete"
    assert {e["host"] for e in meta["engines"].values()} == {"fakehost"}
