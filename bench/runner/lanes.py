"""Several hosts in one run: one runner per host, the hosts in parallel.

Steps within one host stay sequential (one host's instances never share a step with
another's, and its memory guard and readings see only its own); hosts run side by
side, each in its own thread, sharing the step numbers and the one recorder. A host
that fails (its engine or SSH link gone) stops alone: its instances are torn down on
new connections, and the other hosts go on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.runner import Runner, StepResult

# How often the main thread looks up from waiting on the hosts: signals (Ctrl-C) are
# only delivered to it between two waits.
JOIN_POLL_S = 0.2


@dataclass
class HostLanes:
    """The runners of a run's hosts, by host key, driven as one (the Runner interface
    bench.runner.run needs: run, stopping, stop, cleanup, run_id)."""

    runners: dict[str, Runner]
    # Called with a failed host's key before its instances are torn down: drop its
    # connections, so the teardown opens new ones.
    reset: Callable[[str], None] = lambda _key: None
    #: What stopped each failed host.
    errors: dict[str, BaseException] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return next(iter(self.runners.values())).run_id

    def run(self) -> list[StepResult]:
        results: dict[str, list[StepResult]] = {}

        def lane(key: str, runner: Runner) -> None:
            try:
                results[key] = runner.run()
            except BaseException as e:  # this host stops; the others go on
                self.errors[key] = e
                runner.stop()
                try:
                    self.reset(key)
                    runner.cleanup()
                except Exception:
                    pass  # what is left is named by the run's warning (bench clean)

        threads = [
            threading.Thread(target=lane, args=(k, r), name=f"bench-host-{k}", daemon=True)
            for k, r in self.runners.items()
        ]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(JOIN_POLL_S)
        return [r for key in self.runners for r in results.get(key, [])]

    @property
    def stopping(self) -> bool:
        return any(r.stopping for r in self.runners.values())

    def stop(self) -> None:
        for r in self.runners.values():
            r.stop()

    def cleanup(self, workers: int = 32) -> list[str]:
        return sorted(name for r in self.runners.values() for name in r.cleanup(workers))
