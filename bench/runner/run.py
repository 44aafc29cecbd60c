"""`bench run` as a library call: validate, prepare engines, run, store."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from pydantic import JsonValue

from bench.backends import make_backend
from bench.backends.base import Backend, Leftover
from bench.machines.host import Host, LocalHost, host_for, is_local_address, ssh_address
from bench.model import addresses
from bench.model.errors import (
    BenchError,
    EngineUnavailable,
    ExitCode,
    Interrupted,
    MissingImage,
    UnknownRuntime,
    UsageError,
    first_line,
)
from bench.model.owner import run_lock
from bench.model.records import AbPairs, EngineFacts, Facts, Sample, StepRecord
from bench.model.results import RunWriter, new_run_id
from bench.model.settings import PlatformBase
from bench.model.units import format_bytes
from bench.plan.leftovers import clean_command
from bench.plan.scenario import LoadedScenario, Step
from bench.runner import Events, NoEvents, Runner, StepResult
from bench.runner.lanes import HostLanes
from bench.runner.recorder import Recorder


@dataclass
class RunOutcome:
    directory: Path
    run_id: str
    failures: int  # instances that never became ready (the run itself completed)


def slot_names(loaded: LoadedScenario) -> dict[int, str]:
    """Each platform's key in a run's backends, engines and warm-ups, by position: its
    name, or name@host when `bench run --host` put one name on several hosts."""
    platforms = loaded.scenario.platforms
    counts = Counter(p.name for p in platforms)
    return {
        i: p.name if counts[p.name] == 1 else f"{p.name}@{host_label(p)}"
        for i, p in enumerate(platforms)
    }


def host_label(p: PlatformBase) -> str:
    """The machine a placed platform runs on, as a short label (the SSH host[:port])."""
    address = getattr(p, "uri", None) or p.host
    if not address or is_local_address(address):
        return "local"
    ssh = ssh_address(address)
    return addresses.check_ssh(ssh).hostport if ssh else address


def check_against_host(loaded: LoadedScenario, host: Host | Mapping[str, Host]) -> None:
    """Refuse what a platform's host can never do, before anything starts.

    `host`: each platform's host by its slot (slot_names: its name unless it runs on
    several hosts), or one host for all of them.
    """
    totals: dict[str, int] = {}
    slots = slot_names(loaded)
    for i, p in enumerate(loaded.scenario.platforms):
        if isinstance(host, Mapping) and slots[i] not in host:
            continue  # not part of this run (bench ab runs two platforms)
        h = host[slots[i]] if isinstance(host, Mapping) else host
        if h.key not in totals:
            totals[h.key] = h.mem_total_bytes()
        total = totals[h.key]
        if p.memory and p.memory > total:
            raise loaded.error(
                ("platforms", i, "memory"),
                f"{format_bytes(p.memory)} per instance is more than the "
                f"{format_bytes(total)} of memory of host {h.key}",
            )


def refuse_unreadable(backends: Mapping[str, Backend]) -> None:
    """Refuse an engine whose machine bench cannot read (tcp://, qemu+tls://: no SSH),
    before anything is asked of it: its memory would be read from the wrong machine."""
    for b in backends.values():
        host_for(b.engine_address())


@dataclass
class Prepared:
    """The engines of a run, connected and ready to start instances."""

    backends: dict[str, Backend]
    engines: dict[str, EngineFacts]
    # Optional platforms this host cannot run, left out: slot -> why (one line).
    left_out: dict[str, str] = field(default_factory=dict)


def prepare_backends(
    loaded: LoadedScenario,
    factory: Callable[[PlatformBase], Backend] = make_backend,
    say: Callable[[str], None] = lambda _msg: None,
    only: Collection[str] | None = None,
) -> Prepared:
    """Connect every platform's engine (or those named in `only`) and resolve its image,
    or raise before any start. A platform marked `optional` that its host cannot run
    (engine, runtime, image) is left out with why, unless it is the only one."""
    out = Prepared({}, {})
    slots = slot_names(loaded)
    # bench ab names its two platforms: neither is left out.
    optional = _optional(loaded) if only is None else set()
    try:
        for i, p in enumerate(loaded.scenario.platforms):
            if only is None or p.name in only:
                with _unless_optional(out, slots[i], slots[i] in optional):
                    out.backends[slots[i]] = factory(p)
                    out.backends[slots[i]].say = say
        refuse_unreadable(out.backends)
        check_against_host(loaded, {name: b.host for name, b in out.backends.items()})
        # Every platform's cheap checks first: a bad file starts and builds nothing.
        _preflight_all(loaded, out, optional)
        for name, backend in list(out.backends.items()):
            with _unless_optional(out, name, name in optional):
                facts = backend.prepare(build_missing=True, say=say)
                out.engines[name] = EngineFacts.model_validate(facts).on_host(backend.host.key)
        if out.left_out and not out.backends:
            raise EngineUnavailable(
                "no platform can run here: "
                + "; ".join(f"{name}: {why}" for name, why in out.left_out.items())
            )
    except BaseException:
        close_all(out.backends)
        raise
    return out


@contextmanager
def _unless_optional(out: Prepared, slot: str, optional: bool) -> Iterator[None]:
    """An optional platform's failure to connect, pass its checks or prepare leaves it
    out (its backend closed, why kept); any other platform's is the run's."""
    try:
        yield
    except BenchError as e:
        if not optional:
            raise
        backend = out.backends.pop(slot, None)
        if backend is not None:
            close_all({slot: backend})
        out.left_out[slot] = first_line(e)


def _optional(loaded: LoadedScenario) -> set[str]:
    slots = slot_names(loaded)
    return {slots[i] for i, p in enumerate(loaded.scenario.platforms) if p.optional}


def _preflight_all(loaded: LoadedScenario, out: Prepared, optional: set[str]) -> None:
    """Each connected platform's preflight, in the scenario's order; an optional one's
    failure leaves it out."""
    for i, slot in slot_names(loaded).items():
        if slot not in out.backends:
            continue
        with _unless_optional(out, slot, slot in optional):
            try:
                out.backends[slot].preflight()
            except (MissingImage, UnknownRuntime) as e:
                raise loaded.error(("platforms", i, e.key), str(e)) from None


def preflight(
    loaded: LoadedScenario,
    factory: Callable[[PlatformBase], Backend] = make_backend,
    *,
    engines: bool = True,
) -> dict[str, str]:
    """What `bench run` checks before it starts anything, on its own (for validate):
    each platform against its host, then (with `engines`) its engine and images. The
    optional platforms a run would leave out: slot -> why."""
    slots = slot_names(loaded)
    optional = _optional(loaded)
    out = Prepared({}, {})
    for i, p in enumerate(loaded.scenario.platforms):
        with _unless_optional(out, slots[i], slots[i] in optional):
            out.backends[slots[i]] = factory(p)
    for b in out.backends.values():
        b.may_probe = False  # validate starts nothing; a cached probe result still counts
    try:
        refuse_unreadable(out.backends)
        hosts = {name: b.host for name, b in out.backends.items()}
        if not engines:
            # Offline is no network at all: a remote machine's memory is not read.
            hosts = {name: h for name, h in hosts.items() if isinstance(h, LocalHost)}
        check_against_host(loaded, hosts)
        if engines:
            _preflight_all(loaded, out, optional)
    finally:
        close_all(out.backends)
    return out.left_out


def leftovers_of_other_runs(backends: dict[str, Backend]) -> list[Leftover]:
    seen: dict[tuple[str, str], Leftover] = {}
    for b in backends.values():
        for left in b.leftovers():
            if not left.in_use:  # another bench running now is not a leftover
                seen[(left.backend, left.name)] = left
    return list(seen.values())


def run_scenario(
    loaded: LoadedScenario,
    out_dir: Path,
    *,
    name: str | None = None,
    events: Events | None = None,
    warn: Callable[[str], None] = lambda _msg: None,
    say: Callable[[str], None] = lambda _msg: None,
    factory: Callable[[PlatformBase], Backend] = make_backend,
    ab: tuple[str, str] | None = None,
) -> RunOutcome:
    """Run a scenario and store it; with `ab` (baseline, candidate), only those two
    platforms, as counterbalanced step pairs (bench ab)."""
    if ab is not None:
        check_ab(loaded, *ab)
    prepared = _prepare_or_interrupted(loaded, factory, say, ab)
    backends, engines = prepared.backends, prepared.engines
    held = contextlib.ExitStack()  # the run's lock (bench.model.owner.run_lock), once it has an id
    try:
        for slot, why in prepared.left_out.items():
            warn(f"platform {slot} (optional) is left out: {why}")
        _warn_of_other_runs(backends, warn)
        run_id = new_run_id(name or loaded.scenario.name)
        held.enter_context(run_lock(run_id))  # every instance of it is created and gone within
        writer = _start_results(
            loaded, out_dir / run_id, run_id, backends, engines, ab, prepared.left_out
        )
        facts = HostFactsGathering(backends, engines, writer)
        runner = _runner(loaded, run_id, backends, writer, facts.events(events), ab)
        results = _run_to_the_end(runner, writer, facts, loaded)
        return _finish(runner, writer, results, loaded, warn)
    finally:
        close_all(backends)
        held.close()


def _prepare_or_interrupted(
    loaded: LoadedScenario,
    factory: Callable[[PlatformBase], Backend],
    say: Callable[[str], None],
    ab: tuple[str, str] | None,
) -> Prepared:
    """prepare_backends, with Ctrl-C while preparing said as nothing measured."""
    try:
        return prepare_backends(loaded, factory, say, only=ab)
    except KeyboardInterrupt:
        # A KVM probe boot or an image build can take a while; what they started is
        # already gone (their own finally blocks), and nothing was measured.
        raise Interrupted("interrupted while preparing the engines: nothing was measured") from None


def _warn_of_other_runs(backends: dict[str, Backend], warn: Callable[[str], None]) -> None:
    others = leftovers_of_other_runs(backends)
    if others:
        runs = sorted({x.run_id or "?" for x in others})
        warn(
            f"{len(others)} instance(s)/file(s) left over from earlier runs "
            f"({', '.join(runs[:3])}{', ...' if len(runs) > 3 else ''}) may skew "
            "memory and timing: remove them with `bench clean`"
        )


def _start_results(
    loaded: LoadedScenario,
    directory: Path,
    run_id: str,
    backends: dict[str, Backend],
    engines: dict[str, EngineFacts],
    ab: tuple[str, str] | None,
    left_out: dict[str, str] | None = None,
) -> RunWriter:
    """The run's folder, its metadata written: the scenario, its engines and hosts."""
    writer = RunWriter(directory, run_id)
    writer.start(
        {
            "scenario": loaded.scenario.model_dump(mode="json"),
            "scenario_text": loaded.text,
            "scenario_path": str(loaded.path),
            "scenario_sha256": loaded.sha256,
            "searches": loaded.scenario.searches(),
            "engines": engines,
            **({"ab": AbPairs(baseline=ab[0], candidate=ab[1], pairs=[])} if ab else {}),
            **({"left_out": left_out} if left_out else {}),
        }
    )
    return writer


def _run_to_the_end(
    runner: Runner | HostLanes, writer: RunWriter, facts: HostFactsGathering, loaded: LoadedScenario
) -> list[StepResult]:
    """The runner's steps; on an interrupt, a failed host or any error, the results are
    marked so and every instance of the run is destroyed before the error goes on."""
    try:
        with _interrupts(runner, writer):
            results = runner.run()
        facts.write()
        if isinstance(runner, HostLanes) and runner.errors:
            raise _host_failure(runner, writer, loaded)
    except KeyboardInterrupt:
        # Results first (fast, and what matters if a second signal forces exit),
        # then every instance of this run, whatever phase the run was in.
        facts.write()
        writer.finish("interrupted")
        left = runner.cleanup()
        if left:
            raise Interrupted(
                f"interrupted; {len(left)} instance(s) could not be destroyed: "
                f"run `{clean_command(writer.run_id, loaded)}`; finished steps kept in "
                f"{writer.dir}"
            ) from None
        raise Interrupted(
            f"interrupted: every instance destroyed, finished steps kept in {writer.dir}"
        ) from None
    except HostFailed as e:
        raise e.error from None  # recorded and cleaned up by _host_failure
    except BaseException as e:
        facts.write()
        writer.finish("failed", error=str(e)[:500])
        runner.cleanup()
        raise
    return results


def _finish(
    runner: Runner | HostLanes,
    writer: RunWriter,
    results: list[StepResult],
    loaded: LoadedScenario,
    warn: Callable[[str], None],
) -> RunOutcome:
    """A completed run: its instances destroyed (one more try for those an engine
    refused during the run), its results marked complete."""
    failures = sum(r.failures for r in results)
    left = runner.cleanup()
    writer.finish("complete", failures=failures, leftovers=left)
    if left:
        warn(
            f"{len(left)} instance(s) could not be destroyed; remove them with "
            f"`{clean_command(writer.run_id, loaded)}`"
        )
    return RunOutcome(writer.dir, writer.run_id, failures)


def check_ab(loaded: LoadedScenario, baseline: str, candidate: str) -> None:
    """Two distinct platforms of the scenario, with the same fixed counts."""
    sc = loaded.scenario
    names = [p.name for p in sc.platforms]
    for option, name in (("--baseline", baseline), ("--candidate", candidate)):
        if name not in names:
            raise UsageError(
                f"{option} {name!r} is not a platform of {loaded.path} "
                f"(platforms: {', '.join(names)})"
            )
    if baseline == candidate:
        raise UsageError(f"--baseline and --candidate are both {baseline!r}: name two platforms")
    a, b = (next(p for p in sc.platforms if p.name == x) for x in (baseline, candidate))
    for p in (a, b):
        if sc.search_for(p) is not None:
            raise UsageError(
                f"platform {p.name!r} runs a density search: an A/B run needs fixed counts"
            )
    if sc.counts_for(a) != sc.counts_for(b):
        raise UsageError(
            f"{baseline!r} and {candidate!r} have different counts ({sc.counts_for(a)} vs "
            f"{sc.counts_for(b)}): an A/B run pairs steps of the same N"
        )
    # Interleaving only cancels drift that both platforms see: on two machines each has
    # its own, and the pairs would measure the machines' difference.
    where_a, where_b = _machine_of(a), _machine_of(b)
    if where_a != where_b:
        raise UsageError(
            f"{baseline!r} runs on {where_a} and {candidate!r} on {where_b}: an A/B run "
            "compares two platforms on one host (across hosts, use bench compare)"
        )


def _machine_of(platform: PlatformBase) -> str:
    """The machine a platform's engine runs on, as the A/B check names it."""
    from bench.backends import backend_class

    address = backend_class(platform.backend)(platform).engine_address()
    return (ssh_address(address) if address else None) or "this machine"


def _runner(
    loaded: LoadedScenario,
    run_id: str,
    backends: dict[str, Backend],
    writer: RunWriter,
    events: Events,
    ab: tuple[str, str] | None,
) -> Runner | HostLanes:
    """One runner for a run on one host (and for bench ab, whose pairs must stay in
    order); one per host, run in parallel, for several."""
    slots = slot_names(loaded)
    platforms = [p for i, p in enumerate(loaded.scenario.platforms) if slots[i] in backends]
    slot_of = {id(p): slots[i] for i, p in enumerate(loaded.scenario.platforms)}

    def slot(p: PlatformBase) -> str:
        return slot_of[id(p)]

    by_host: dict[str, list[PlatformBase]] = {}
    for p in platforms:
        by_host.setdefault(backends[slot(p)].host.key, []).append(p)
    if ab is not None or len(by_host) == 1:
        return Runner(
            loaded, run_id, backends, writer, events, ab=ab, platforms=platforms, slot_of=slot
        )
    counter, recorder = itertools.count(), Recorder(writer)
    runners = {
        key: Runner(
            loaded,
            run_id,
            backends,
            writer,
            events,
            platforms=ps,
            slot_of=slot,
            counter=counter,
            recorder=recorder,
        )
        for key, ps in by_host.items()
    }

    def reset(key: str) -> None:
        # New connections for the teardown: the failed ones may be dead (SSH dropped).
        for p in by_host[key]:
            backend = backends[slot(p)]
            with contextlib.suppress(Exception):
                backend.close()
            close = getattr(backend.host, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    return HostLanes(runners, reset=reset)


class HostFailed(Exception):
    """Carries a failed host's one-line error past run_scenario's generic handler."""

    def __init__(self, error: BenchError):
        super().__init__(str(error))
        self.error = error


def _host_failure(lanes: HostLanes, writer: RunWriter, loaded: LoadedScenario) -> HostFailed:
    """Some hosts stopped (each already cleaned up), the others finished: keep every
    finished step, and say in one line which host failed and why."""
    lines = {key: first_line(e, 500) for key, e in lanes.errors.items()}
    left = lanes.cleanup()
    writer.finish("failed", error="; ".join(lines.values()), host_errors=lines, leftovers=left)
    key, error = next(iter(lanes.errors.items()))
    others = [k for k in lanes.runners if k not in lanes.errors]
    kept = (
        f"{', '.join(others)} finished; every finished step is kept in {writer.dir}"
        if others
        else f"finished steps are kept in {writer.dir}"
    )
    more = f" (and {len(lanes.errors) - 1} other host(s))" if len(lanes.errors) > 1 else ""
    message = f"host {key} stopped{more}: {first_line(error, 300)}; {kept}"
    if left:
        message += f"; remove what is left with `{clean_command(writer.run_id, loaded)}`"
    cls = type(error) if isinstance(error, EngineUnavailable) else BenchError
    try:
        out = cls(message)
    except TypeError:
        out = BenchError(message)
    return HostFailed(out)


def describe_hosts(
    backends: Mapping[str, Backend], engines: Mapping[str, EngineFacts]
) -> dict[str, Facts]:
    """One record of facts per distinct host (metadata.json's "hosts", stored as the
    host describes itself), in platform order, with its engines' versions."""
    hosts: dict[str, Facts] = {}
    host_engines: dict[str, dict[str, JsonValue]] = {}
    for name, backend in backends.items():
        host = backend.host
        if host.key not in hosts:
            host_engines[host.key] = {}
            try:
                hosts[host.key] = {
                    **host.describe(),
                    "rtt_s": host.rtt_s(),
                    "engines": host_engines[host.key],
                }
            except Exception as e:  # a host lost meanwhile: its lane says why
                hosts[host.key] = {"error": first_line(e), "engines": host_engines[host.key]}
        engine = engines[name].model_dump(mode="json") if name in engines else {}
        # Each host's own engine versions and image digests, next to its facts: the same
        # rootfs_sha256 on two hosts is the same userland.
        host_engines[host.key][name] = {
            k: v
            for k, v in engine.items()
            if k.endswith("_version") or k in ("engine", "accel", "image_id", "rootfs_sha256")
        }
    return hosts


class HostFactsGathering:
    """Each host's facts (describe_hosts), gathered in a thread while the warm-up and
    the first step run: nothing before needs them, and a remote host answers over round
    trips. They reach metadata.json ("host", "hosts") when the first step ends, or the
    run does, whichever is first; once per run."""

    def __init__(
        self, backends: dict[str, Backend], engines: dict[str, EngineFacts], writer: RunWriter
    ):
        self._writer = writer
        self._lock = threading.Lock()
        self._written = False
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="bench-facts")
        self._future = self._pool.submit(describe_hosts, dict(backends), engines)

    def write(self) -> None:
        with self._lock:
            if self._written:
                return
            self._written = True
            try:
                hosts = self._future.result()
            finally:
                self._pool.shutdown()
            # "host": the first platform's, for readers that know one host per run.
            self._writer.update(host=next(iter(hosts.values())), hosts=hosts)

    def events(self, events: Events | None) -> Events:
        """`events`, which first writes the facts when the first step ends."""
        return _FactsFirst(events or NoEvents(), self)


class _FactsFirst:
    """`events`, with the host facts written before the first step's end is told."""

    def __init__(self, events: Events, facts: HostFactsGathering):
        self._events, self._facts = events, facts

    def step_started(self, index: int, total: int, step: Step) -> None:
        self._events.step_started(index, total, step)

    def instance_done(self, step: Step, ok: bool) -> None:
        self._events.instance_done(step, ok)

    def warmup_started(self, platform: str, instances: int) -> None:
        self._events.warmup_started(platform, instances)

    def step_finished(self, step: Step, samples: list[Sample], record: StepRecord) -> None:
        self._facts.write()
        self._events.step_finished(step, samples, record)

    def step_refused(self, step: Step, reason: str) -> None:
        self._facts.write()
        self._events.step_refused(step, reason)


def close_all(backends: dict[str, Backend]) -> None:
    for b in backends.values():
        try:
            b.close()
        except Exception:
            pass


@contextmanager
def _interrupts(runner: Runner | HostLanes, writer: RunWriter) -> Iterator[None]:
    """SIGINT and SIGTERM stop the run cleanly; a second one forces exit at once.

    Forced exit leaves the results marked interrupted and any remaining instance
    labelled with the run id, for `bench clean --run RUN_ID`.
    """

    def handler(_signum: int, _frame: FrameType | None) -> None:
        if runner.stopping:
            if writer.metadata.get("status") == "running":
                writer.update(status="interrupted")
            os.write(
                2,
                f"bench: forced exit; remove what is left with `bench clean --run "
                f"{runner.run_id}`\n".encode(),
            )
            os._exit(int(ExitCode.INTERRUPTED))
        runner.stop()
        raise KeyboardInterrupt

    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread (tests): leave signals alone
        yield
        return
    try:
        yield
    finally:
        for sig, prev in previous.items():
            signal.signal(sig, prev)
