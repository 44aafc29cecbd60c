"""Where a run's leftovers are, and the `bench clean` that finds them.

Below the runner and above the engines: the runner's and `bench run`'s error lines name
the clean-up command (`clean_command`), and `bench clean` searches the same engines.
"""

from __future__ import annotations

from bench.backends.base import Backend, Options
from bench.plan.scenario import LoadedScenario


def default_backends(options: Options) -> list[Backend]:
    """Every registered backend's engines on this host (each reads its own options)."""
    from bench.backends import BACKENDS, backend_class

    return [b for name in BACKENDS for b in backend_class(name).for_cleanup(options)]


def scenario_backends(loaded: LoadedScenario) -> list[Backend]:
    """One backend per distinct engine the scenario's platforms use (every host it
    names), so leftovers of a run on other machines are found where they are."""
    from bench.backends import make_backend

    seen: dict[tuple[str, str | None], Backend] = {}
    for p in loaded.scenario.platforms:
        backend = make_backend(p)
        seen.setdefault((p.backend, backend.engine_address()), backend)
    return list(seen.values())


def clean_command(run_id: str, loaded: LoadedScenario | None = None) -> str:
    """The `bench clean` that finds a run's leftovers: with the scenario (and the hosts it
    was placed on) when plain `bench clean` would not search all of its engines (another
    host's, or a second engine on this one)."""
    command = f"bench clean --run {run_id}"
    if loaded is None:
        return command
    backends, defaults = scenario_backends(loaded), default_backends({})
    try:
        searched = {(type(b), b.engine_address()) for b in defaults}
        if all((type(b), b.engine_address()) in searched for b in backends):
            return command
    finally:
        for b in backends + defaults:
            b.close()
    return f"{command} --scenario {loaded.path}" + "".join(f" --host {h}" for h in loaded.placed_on)
