"""Docker runtimes without an engine: `runtime:` in preflight against a stand-in API,
the probe's cache key, and the set-up's daemon.json merge (scripts/docker_runtimes.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys

import pytest

from bench.model.errors import ExitCode, RuntimeUnusable, ScenarioError, UnknownRuntime
from tests.conftest import REPO
from tests.helpers import FakeHost

SCRIPT = REPO / "scripts" / "docker_runtimes.py"


def _script():
    spec = importlib.util.spec_from_file_location("docker_runtimes", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# -- daemon.json merge ------------------------------------------------------------------


def test_merge_adds_runtimes_and_keeps_every_other_key():
    config = {
        "log-driver": "json-file",
        "runtimes": {"kata": {"path": "/opt/kata/bin/kata-runtime"}},
        "default-runtime": "runc",
    }
    merged = _script().merge_runtimes(config, {"runsc": "/usr/bin/runsc", "crun": "/usr/bin/crun"})
    assert merged == {
        "log-driver": "json-file",
        "default-runtime": "runc",
        "runtimes": {
            "kata": {"path": "/opt/kata/bin/kata-runtime"},
            "runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]},
            "crun": {"path": "/usr/bin/crun"},
        },
    }
    assert "runsc" not in config["runtimes"]  # the input is not modified


def test_merge_keeps_a_registered_runtimes_own_path_and_args_adding_only_what_is_required():
    config = {"runtimes": {"runsc": {"path": "/opt/runsc", "runtimeArgs": ["--platform=kvm"]}}}
    merged = _script().merge_runtimes(config, {"runsc": "/usr/bin/runsc"})
    assert merged["runtimes"]["runsc"] == {
        "path": "/opt/runsc",
        "runtimeArgs": ["--platform=kvm", "--network=none"],
    }
    # Already complete: nothing changes.
    assert _script().merge_runtimes(merged, {"runsc": "/usr/bin/runsc"}) == merged


def test_merge_refuses_runtimes_that_is_not_a_mapping():
    with pytest.raises(ValueError, match="not a mapping"):
        _script().merge_runtimes({"runtimes": ["runsc"]}, {"runsc": "/usr/bin/runsc"})


def _run_script(path, *runtimes):
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(path), *runtimes],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_script_creates_merges_and_writes_only_on_change(tmp_path):
    daemon = tmp_path / "docker" / "daemon.json"
    p = _run_script(daemon, "runsc=/usr/bin/runsc")
    assert p.returncode == 0 and p.stdout.strip() == "changed", p.stderr
    assert json.loads(daemon.read_text())["runtimes"]["runsc"]["runtimeArgs"] == ["--network=none"]

    daemon.write_text(json.dumps({"debug": True, "runtimes": {"x": {"path": "/x"}}}))
    daemon.chmod(0o600)
    p = _run_script(daemon, "runsc=/usr/bin/runsc", "crun=/usr/bin/crun")
    assert p.stdout.strip() == "changed"
    config = json.loads(daemon.read_text())
    assert config["debug"] is True and set(config["runtimes"]) == {"x", "runsc", "crun"}
    assert daemon.stat().st_mode & 0o777 == 0o600  # its mode is kept

    before = daemon.stat().st_mtime_ns, daemon.stat().st_ino
    p = _run_script(daemon, "runsc=/usr/bin/runsc", "crun=/usr/bin/crun")
    assert p.returncode == 0 and p.stdout.strip() == "unchanged"
    assert (daemon.stat().st_mtime_ns, daemon.stat().st_ino) == before


def test_script_leaves_an_invalid_daemon_json_alone(tmp_path):
    daemon = tmp_path / "daemon.json"
    daemon.write_text('{"debug": true,')
    p = _run_script(daemon, "runsc=/usr/bin/runsc")
    assert p.returncode == 1 and "left unchanged" in p.stderr
    assert daemon.read_text() == '{"debug": true,'
    assert [f.name for f in tmp_path.iterdir()] == ["daemon.json"]  # no temporary left


def test_script_keeps_a_linked_daemon_json_a_link_and_its_owner(tmp_path):
    # A link in daemon.json's folder to a file beside it: the merge used to write a new
    # file over the link, with root's owner. The link and the file's owner, group and mode
    # stay (the dummy target is this test's own file).
    target = tmp_path / "docker" / "managed" / "daemon.json"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps({"debug": True}))
    target.chmod(0o640)
    os.chown(target, 4242, 4343)
    link = tmp_path / "docker" / "daemon.json"
    link.symlink_to(target)
    p = _run_script(link, "runsc=/usr/bin/runsc")
    assert p.returncode == 0 and p.stdout.strip() == "changed", p.stderr
    assert link.is_symlink() and link.resolve() == target
    config = json.loads(target.read_text())
    assert config["debug"] is True and "runsc" in config["runtimes"]
    st = target.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (4242, 4343, 0o640)
    assert sorted(f.name for f in target.parent.iterdir()) == ["daemon.json"]


def test_script_refuses_a_daemon_json_linked_out_of_its_folder(tmp_path):
    # The file a link out of /etc/docker names belongs to something else: one line, and
    # neither the link nor that file (the test's own dummy) is touched.
    elsewhere = tmp_path / "managed" / "daemon.json"
    elsewhere.parent.mkdir()
    elsewhere.write_text('{"debug": true}')
    link = tmp_path / "docker" / "daemon.json"
    link.parent.mkdir()
    link.symlink_to(elsewhere)
    p = _run_script(link, "runsc=/usr/bin/runsc")
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "outside" in p.stderr and "left unchanged" in p.stderr
    assert link.is_symlink() and elsewhere.read_text() == '{"debug": true}'
    assert [f.name for f in link.parent.iterdir()] == ["daemon.json"]


def test_the_new_daemon_json_is_synced_before_and_after_its_rename(tmp_path, monkeypatch):
    # A crash after the rename must find the whole new file, and the rename itself, on disk.
    mod = _script()
    daemon = tmp_path / "daemon.json"
    daemon.write_text("{}")
    os.chown(daemon, 4242, 4343)
    synced = []
    real_fsync = mod.os.fsync

    def fsync(fd):
        st = os.fstat(fd)
        synced.append(("folder" if stat.S_ISDIR(st.st_mode) else "file", st.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(mod.os, "fsync", fsync)
    old_inode = daemon.stat().st_ino
    assert mod.update_file(daemon, {"runsc": "/usr/bin/runsc"}) is True
    st = daemon.stat()
    assert st.st_ino != old_inode and (st.st_uid, st.st_gid) == (4242, 4343)
    assert synced == [("file", st.st_ino), ("folder", tmp_path.stat().st_ino)]


def test_script_refuses_a_daemon_json_that_is_not_a_file(tmp_path):
    folder = tmp_path / "daemon.json"
    folder.mkdir()
    p = _run_script(folder, "runsc=/usr/bin/runsc")
    assert p.returncode == 1 and "left unchanged" in p.stderr


# -- the probe's cache key ----------------------------------------------------------------

INFO = {
    "ID": "ABCD:EFGH",
    "ServerVersion": "20.10.24",
    "DefaultRuntime": "runc",
    "KernelVersion": "6.18.0",
    "CgroupVersion": "1",
    "CgroupDriver": "cgroupfs",
    "Runtimes": {
        "runc": {"path": "runc"},
        "runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]},
        "crun": {"path": "/usr/bin/crun"},
    },
}


def test_probe_key_changes_with_host_daemon_version_runtime_and_its_registration():
    from bench.backends.docker_backend import runtime_probe_key

    key = runtime_probe_key("h1", INFO, "runsc")
    assert key == runtime_probe_key("h1", json.loads(json.dumps(INFO)), "runsc")  # stable
    changed = [
        runtime_probe_key("h2", INFO, "runsc"),
        runtime_probe_key("h1", INFO, "crun"),
        runtime_probe_key("h1", {**INFO, "ServerVersion": "24.0.7"}, "runsc"),
        runtime_probe_key("h1", {**INFO, "ID": "OTHER"}, "runsc"),
        runtime_probe_key("h1", {**INFO, "KernelVersion": "6.1.0"}, "runsc"),
        runtime_probe_key("h1", {**INFO, "CgroupVersion": "2"}, "runsc"),
        runtime_probe_key(
            "h1",
            {**INFO, "Runtimes": {**INFO["Runtimes"], "runsc": {"path": "/usr/bin/runsc"}}},
            "runsc",
        ),
    ]
    assert key not in changed and len(set(changed)) == len(changed)
    # Another runtime's registration does not invalidate this one's probe.
    other = {**INFO, "Runtimes": {**INFO["Runtimes"], "crun": {"path": "/opt/crun"}}}
    assert runtime_probe_key("h1", other, "runsc") == key


def test_runtime_reason_is_the_runtimes_own_line():
    from bench.backends.docker_backend import runtime_reason

    crun = "cgroups in hybrid mode not supported, drop all controllers from cgroupv2"
    assert runtime_reason(f"failed to create shim: OCI runtime create failed: {crun}: unknown") == (
        crun
    )
    assert runtime_reason(f"OCI runtime create failed: {crun}: unknown\nmore") == crun
    assert runtime_reason(f"crun: {crun}: unknown", "crun") == crun
    assert runtime_reason("no such file") == "no such file"


def test_version_line():
    from bench.backends.oci import version_line

    assert version_line("runsc version release-20221219.0\nspec: 1.0.2-dev\n") == (
        "release-20221219.0"
    )
    assert version_line("crun version 1.8.1\ncommit: abc\n") == "1.8.1"
    assert version_line("") is None


# -- runtime: in preflight, against a stand-in engine ----------------------------------


class ApiError(Exception):
    pass


class Api:
    """The few docker APIClient calls preflight and the probe make."""

    def __init__(self, start_error=None, has_image=True):
        self.start_error, self.has_image_ = start_error, has_image
        self.created, self.removed = [], []

    def info(self):
        return INFO

    def inspect_image(self, ref):
        import docker.errors

        if not self.has_image_:
            raise docker.errors.ImageNotFound(ref)
        return {"Id": "sha256:" + "0" * 64, "Config": {"Labels": {}}}

    def create_host_config(self, **kw):
        return kw

    def create_container(self, image, **kw):
        self.created.append((image, kw))
        return {"Id": "c1"}

    def start(self, cid):
        if self.start_error:
            import docker.errors

            raise docker.errors.APIError("500 Server Error", explanation=self.start_error)

    def wait(self, cid, timeout):
        return {"StatusCode": 0}

    def logs(self, cid):
        return b"4.4.0\n"

    def remove_container(self, name, **kw):
        self.removed.append(name)

    def close(self):
        pass


@pytest.fixture
def docker_backend(monkeypatch, tmp_path):
    from bench.backends.docker_backend import DockerBackend, DockerSettings

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))

    def make(api, runtime):
        settings = DockerSettings(name="g", backend="docker", image="busybox", runtime=runtime)
        b = DockerBackend(settings, host=FakeHost(lambda: []))
        b._api = api  # connected
        return b

    return make


def test_an_unregistered_runtime_is_refused_naming_the_registered_ones(docker_backend):
    api = Api()
    b = docker_backend(api, "kata")
    with pytest.raises(UnknownRuntime) as e:
        b.preflight()
    assert e.value.exit_code == ExitCode.USAGE and e.value.key == "runtime"
    assert "'kata' is not registered" in str(e.value)
    assert "(registered: crun, runc, runsc)" in str(e.value)
    assert api.created == []  # nothing started


def test_a_runtime_that_cannot_start_the_image_is_refused_with_its_reason_once_probed(
    docker_backend, tmp_path
):
    reason = "cgroups in hybrid mode not supported, drop all controllers from cgroupv2"
    api = Api(start_error=f"failed to create shim: OCI runtime create failed: {reason}: unknown")
    said = []
    b = docker_backend(api, "crun")
    b.say = said.append
    with pytest.raises(RuntimeUnusable) as e:
        b.preflight()
    assert e.value.exit_code == ExitCode.ENGINE_UNAVAILABLE
    assert str(e.value) == (
        f"platform 'g': runtime 'crun' cannot start the bench image on this host: {reason}"
    )
    assert "\n" not in str(e.value)
    assert said == ["probing runtime crun (once per host, then cached)..."]
    (image, kw) = api.created[0]
    assert kw["host_config"]["runtime"] == "crun" and kw["labels"]["bench.run_id"]
    assert api.removed == [kw["name"]]  # the probe container is gone

    # Cached: a second preflight refuses the same way without starting anything.
    api2 = Api()
    b2 = docker_backend(api2, "crun")
    b2.say = said.append
    with pytest.raises(RuntimeUnusable, match="hybrid mode"):
        b2.preflight()
    assert api2.created == [] and len(said) == 1
    cached = json.loads((tmp_path / "cache" / "runtime-probe.json").read_text())
    assert [v["ok"] for v in cached.values()] == [False]


def test_a_working_runtime_passes_and_instances_use_it(docker_backend):
    api = Api()
    b = docker_backend(api, "runsc")
    b.preflight()
    assert len(api.created) == 1  # the probe
    assert b.probe_runtime("runsc").detail == "starts the bench image (kernel 4.4.0)"
    assert b.runtime == "runsc"


def test_without_runtime_nothing_is_probed_and_the_default_is_recorded(docker_backend):
    api = Api()
    b = docker_backend(api, None)
    b.preflight()
    assert api.created == [] and b.runtime == "runc"


def test_bench_run_locates_an_unknown_runtime_in_the_scenario(monkeypatch, tmp_path):
    from bench.backends.docker_backend import DockerBackend
    from bench.plan.scenario import load_scenario
    from bench.runner.run import preflight

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    api = Api()
    monkeypatch.setattr(DockerBackend, "connect", lambda self: setattr(self, "_api", api) or api)
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\nplatforms:\n  - {name: g, backend: docker, image: busybox, runtime: kata}\n"
    )
    with pytest.raises(ScenarioError) as e:
        preflight(load_scenario(path))
    assert e.value.key and "runtime" in str(e.value) and "'kata' is not registered" in str(e.value)
    assert e.value.exit_code == ExitCode.USAGE


def test_prepare_records_the_runtime_and_its_version(docker_backend):
    import subprocess as sp

    api = Api()
    api.version = lambda: {"Version": "20.10.24", "Components": []}
    b = docker_backend(api, "runsc")
    host = b.host
    host.run = lambda argv, timeout: sp.CompletedProcess(
        argv, 0, "runsc version release-20221219.0\nspec: 1.0.2-dev\n", ""
    )
    b.preflight()
    engine = b.prepare(build_missing=False)
    assert engine["runtime"] == "runsc" and engine["runtime_version"] == "release-20221219.0"
    assert engine["default_runtime"] == "runc"
    assert len(api.created) == 1  # probed once, in preflight, not again in prepare


def test_validate_starts_no_probe_but_a_cached_refusal_still_counts(monkeypatch, tmp_path):
    from bench.backends.docker_backend import DockerBackend
    from bench.plan.scenario import load_scenario
    from bench.runner.run import preflight

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    reason = "cgroups in hybrid mode not supported, drop all controllers from cgroupv2"
    api = Api(start_error=f"OCI runtime create failed: {reason}: unknown")
    monkeypatch.setattr(DockerBackend, "connect", lambda self: setattr(self, "_api", api) or api)
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\nplatforms:\n  - {name: c, backend: docker, image: busybox, runtime: crun}\n"
    )
    preflight(load_scenario(path))  # bench validate: nothing known, nothing started
    assert api.created == []
    b = DockerBackend(load_scenario(path).scenario.platforms[0])  # the same host as validate
    b._api = api
    with pytest.raises(RuntimeUnusable):
        b.preflight()  # bench run probes
    assert len(api.created) == 1
    with pytest.raises(RuntimeUnusable, match=reason):
        preflight(load_scenario(path))  # validate now knows
    assert len(api.created) == 1
