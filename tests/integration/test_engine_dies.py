"""An engine that dies mid-run: bench talks to dockerd through a socket proxy that the
test kills, so the real daemon (shared with the rest of the suite) keeps running."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

from tests.integration.bench_runs import start_run
from tests.integration.engine_watch import purge

DOCKER_SOCK = "/var/run/docker.sock"


class SocketProxy:
    """Forwards a unix socket to dockerd's until kill(), which drops every connection."""

    def __init__(self, path: Path):
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(64)
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(DOCKER_SOCK)
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def kill(self) -> None:
        self.server.close()
        self.path.unlink(missing_ok=True)
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()


def test_engine_dying_mid_run_stops_with_one_line_and_keeps_finished_steps(tmp_path, docker_api):
    proxy = SocketProxy(tmp_path / "docker.sock")
    name = f"dies{os.getpid()}"
    scenario = tmp_path / "dies.yaml"
    scenario.write_text(
        "name: dies\nsettle: 0s\ntimeout: 30s\ncounts: [2, 2, 2]\n"
        "platforms:\n  - name: c\n    backend: docker\n    image: busybox\n"
        f"    host: unix://{proxy.path}\n"
    )
    proc = start_run(scenario, tmp_path / "r", name)
    try:
        # Let the first step finish (its record is written), then the engine "dies".
        deadline = time.monotonic() + 60
        steps = None
        while time.monotonic() < deadline:
            found = list((tmp_path / "r").glob(f"{name}-*/steps.jsonl"))
            if found and found[0].read_text().strip():
                steps = found[0]
                break
            time.sleep(0.02)
        assert steps is not None, "the first step never finished"
        proxy.kill()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        purge(name, [])
    assert proc.returncode == 3, out + err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("bench: error: the docker engine of platform 'c' stopped answering")
    assert "Traceback" not in err
    meta = json.loads((steps.parent / "metadata.json").read_text())
    assert meta["status"] == "failed"
    samples = [json.loads(x) for x in (steps.parent / "samples.jsonl").read_text().splitlines()]
    # The finished first step is kept whole; what came after is recorded as failed.
    assert [s["ok"] for s in samples if s["step"] == 0] == [True, True]
    assert all(not s["ok"] for s in samples if s["step"] > 0)
