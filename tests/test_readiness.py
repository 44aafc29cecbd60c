"""Readiness as a platform's `ready:` defines it (marker, regex, tcp, http, exit), on
the fake backend and a virtual clock: the runner's probes connect for real to each
fake instance's socket on 127.0.0.1, which listens only once the instance booted."""

import pytest

from bench.model.settings import ReadyRule, regex_risk
from bench.plan.scenario import ScenarioError, parse_scenario
from bench.runner import readiness
from tests.helpers import run_fake


def run(platform_extra: str, top: str = ""):
    text = (
        "name: t\ntimeout: 2s\nsettle: 0s\ncounts: [2]\nwarmup: 0\n"
        + top
        + "platforms:\n  - name: f\n    backend: fake\n    boot: 100ms\n"
        + platform_extra
    )
    _, sink, backends = run_fake(text, total=64 * 2**30)
    assert backends["f"].live == {}  # every instance destroyed, its server closed
    return sink.samples


def test_regex_on_a_console_line_stores_its_named_groups():
    samples = run("    ready: {regex: 'READY uptime=(?P<up>[0-9.]+) kernel=(?P<k>\\S+)'}\n")
    for s in samples:
        assert s["ok"] and s["ready_kind"] == "regex"
        assert s["ready_s"] == pytest.approx(0.1)
        assert s["marker_fields"] == {"up": "0.5", "k": f"fake-{s['index']}"}


def test_regex_that_never_matches_says_which_pattern():
    samples = run("    ready: {regex: 'NEVER\\d'}\n")
    assert all(s["failure"] == "timeout" for s in samples)
    assert samples[0]["error"] == "no line matching 'NEVER\\\\d' within 2s"


def test_tcp_ready_once_the_port_accepts():
    samples = run("    ready: {tcp: 8080}\n")
    for s in samples:
        assert s["ok"] and s["ready_kind"] == "tcp" and s["error"] is None
        # Refused until the instance listened at 100 ms; ready at the first attempt
        # after it: late by at most the probe's window, itself at most its longest pause.
        assert 0.1 <= s["ready_s"] <= 0.1 + readiness.MAX_GAP_S + 1e-9
        assert 0 < s["ready_window_s"] <= readiness.MAX_GAP_S + 1e-9
        assert s["ready_s"] - s["ready_window_s"] < 0.1  # the last refusal came before
        assert s["ready_probes"] > 5


def test_tcp_refused_until_the_timeout():
    samples = run("    ready: {tcp: 8080}\n    silent: [1]\n")
    failed = [s for s in samples if not s["ok"]]
    assert [s["index"] for s in failed] == [1]
    assert failed[0]["failure"] == "timeout"
    assert failed[0]["error"] == "port 8080 refused until the 2s timeout"


def test_http_ready_on_the_expected_status():
    samples = run("    ready: {http: {port: 80, path: /health}}\n")
    assert all(s["ok"] and s["ready_kind"] == "http" for s in samples)
    assert all(0.1 <= s["ready_s"] <= 0.1 + readiness.MAX_GAP_S + 1e-9 for s in samples)


def test_http_other_status_until_the_timeout():
    samples = run("    ready: {http: {port: 80, path: /health}}\n    http_status: 503\n")
    assert all(s["failure"] == "timeout" for s in samples)
    assert samples[0]["error"] == "HTTP 503 on /health until the 2s timeout"


def test_http_instance_that_exits_before_ready():
    samples = run("    ready: {http: {port: 80}}\n    crash: [0]\n")
    failed = [s for s in samples if not s["ok"]]
    assert [(s["index"], s["failure"]) for s in failed] == [(0, "exited")]
    assert failed[0]["error"] == "fake instance exited before HTTP 200 on / (port 80)"


def test_exit_zero_is_ready_when_it_ends():
    samples = run("    ready: {exit: 0}\n")
    for s in samples:
        assert s["ok"] and s["ready_kind"] == "exit" and s["exit_code"] == 0
        assert s["ready_s"] == pytest.approx(0.1)  # the instant its output ended


def test_exit_with_another_status_fails_at_once():
    samples = run("    ready: {exit: 0}\n    exit_status: 3\n")
    for s in samples:
        assert s["failure"] == "exited" and s["exit_code"] == 3
        assert s["error"] == "exited 3 before ready (exit status 0)"


def test_exit_never_reached_times_out():
    samples = run("    ready: {exit: 0}\n    silent: [0]\n")
    failed = [s for s in samples if not s["ok"]]
    assert [s["index"] for s in failed] == [0]
    assert failed[0]["error"] == "still running at the 2s timeout (ready: exit status 0)"


def test_marker_stays_the_default():
    samples = run("")
    assert all(s["ok"] and s["ready_kind"] == "marker" for s in samples)
    assert all(s["ready_probes"] is None and s["exit_code"] is None for s in samples)


# -- the rule, at scenario load ---------------------------------------------------------


def _error(platform: str) -> str:
    text = f"name: x\nplatforms:\n  - name: c\n    backend: docker\n    image: busybox\n{platform}"
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text)
    return str(e.value)


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        (
            "    ready: {tcp: 8080}\n",
            "platforms[0].network: ready: tcp probes the container's port from this host, "
            "which network none cannot reach: set network: bridge",
        ),
        (
            "    network: bridge\n    ready: {tcp: 80, exit: 0}\n",
            "platforms[0].ready: give one of marker, regex, tcp, http, exit, not tcp and exit",
        ),
        (
            "    ready: {regex: '(\\w+ ?)*$'}\n",
            "platforms[0].ready.regex: a quantifier inside a repeated group can take "
            "exponential time on a console line",
        ),
        ("    ready: {regex: '(a'}\n", "platforms[0].ready.regex: not a regular expression"),
        ("    ready: {regex: '" + "a" * 201 + "'}\n", "platforms[0].ready.regex"),
        ("    network: bridge\n    ready: {tcp: 0}\n", "platforms[0].ready.tcp"),
        ("    network: bridge\n    ready: {http: {port: 80, path: x}}\n", "ready.http.path"),
        ("    ready: {exit: 256}\n", "platforms[0].ready.exit"),
    ],
)
def test_bad_ready_rules_name_the_key(platform, expected):
    assert expected in _error(platform)


def test_a_vm_waits_for_a_port_only_on_a_network():
    text = "name: x\nplatforms:\n  - name: v\n    backend: qemu\n    ready: {tcp: 22}\n"
    with pytest.raises(ScenarioError, match=r"platforms\[0\].network: .* set network: user"):
        parse_scenario(text)
    assert parse_scenario(text.replace("ready:", "network: user\n    ready:")).platforms[0]


def test_rules_and_their_kinds():
    sc = parse_scenario(
        "name: x\nplatforms:\n"
        "  - {name: a, backend: docker, image: i, network: bridge, ready: {http: {port: 80}}}\n"
        "  - {name: b, backend: docker, image: i, ready: {exit: 0}}\n"
        "  - {name: c, backend: docker, image: i, ready: UP}\n"
    )
    a, b, c = sc.platforms
    assert a.ready.kind == "http" and a.ready.port == 80 and a.ready.http.status == 200
    assert b.ready.kind == "exit" and b.ready.port is None
    assert c.ready.kind == "marker" and c.ready.marker == "UP"
    assert ReadyRule().marker == "BENCH_READY" and ReadyRule().kind == "marker"


@pytest.mark.parametrize(
    ("pattern", "risky"),
    [
        ("(a+)+b", True),
        ("(?:x|y*)*", True),
        ("(a)\\1", True),
        ("BENCH_READY (?P<t>\\d+\\.\\d+)", False),
        ("(ab)+c", False),
        ("(?:a++)+", False),  # possessive: never backtracks
    ],
)
def test_regex_risk(pattern, risky):
    assert (regex_risk(pattern) is not None) == risky


def test_the_shipped_service_scenario_differs_only_in_ready():
    from bench.plan.scenario import load_scenario
    from tests.conftest import REPO

    sc = load_scenario(REPO / "scenarios" / "service.yaml").scenario
    kinds = {p.name: p.ready.kind for p in sc.platforms}
    assert kinds == {"http": "http", "marker": "marker", "oneshot": "exit"}
    assert {(p.image, p.network) for p in sc.platforms} == {("bench-service:demo", "bridge")}
    dockerfile = (REPO / "scenarios" / "service" / "Dockerfile").read_text()
    assert "FROM bench/busybox:latest" in dockerfile


def test_the_report_says_what_ready_meant(tmp_path):
    from bench.report.frame import load_frames
    from bench.report.model import build_model
    from bench.report.render_markdown import summary_markdown
    from tests.test_report import sample, write_run

    platforms = [
        {"name": "container", "backend": "docker", "ready": {"http": {"port": 80}}},
        {"name": "vm", "backend": "libvirt", "ready": {"marker": "BENCH_READY"}},
    ]
    samples = [sample("container", 1, 0.3, ready_kind="http"), sample("vm", 1, 2.0)]
    d = write_run(tmp_path, "r1", samples, [], scenario={"name": "s", "platforms": platforms})
    model = build_model(load_frames([d]))
    # Only the platform whose ready is not the default marker needs saying.
    assert model.ready_means == {"r1": "ready means container: HTTP 200 on / (port 80)"}
    assert "ready means container: HTTP 200 on / (port 80)." in summary_markdown(model)
    assert "ready means container: HTTP 200 on / (port 80)" in model.notes


def test_a_rule_is_stored_as_given():
    # As runs before the other kinds stored it: the same setup compares as the same.
    assert ReadyRule().model_dump(mode="json") == {"marker": "BENCH_READY"}
    rule = ReadyRule.model_validate({"http": {"port": 80}})
    assert rule.model_dump(mode="json") == {"http": {"port": 80, "path": "/", "status": 200}}
    assert ReadyRule.model_validate(rule.model_dump(mode="json")) == rule


def test_a_remote_engines_containers_are_not_probed_from_here():
    from bench.backends.docker_backend import DockerBackend, DockerSettings
    from bench.model.errors import UsageError

    settings = DockerSettings(
        name="c",
        backend="docker",
        image="busybox",
        network="bridge",
        host="ssh://root@127.0.0.1:2222",
        ready={"tcp": 8080},
    )
    backend = DockerBackend(settings)
    # Refused before any connection is made: nothing on the engine is touched.
    with pytest.raises(UsageError, match="cannot reach containers of the engine at ssh://"):
        backend.preflight()
    assert backend._api is None


def test_the_plan_shows_ready_only_when_some_platform_is_not_the_default():
    from bench.report.views import plan_table

    labels = {
        "UP": "UP",
        "{regex: 'a b'}": "/a b/",
        "{tcp: 80}": "tcp :80",
        "{http: {port: 8080, path: /health}}": "HTTP 200 :8080/health",
        "{exit: 0}": "exit 0",
    }
    for text, label in labels.items():
        sc = parse_scenario(
            "name: x\nplatforms:\n  - {name: a, backend: docker, image: i, network: bridge, "
            f"ready: {text}}}\n"
        )
        assert sc.platforms[0].ready.describe(short=True) == label
        assert [c.header for c in plan_table(sc).columns][-1] == "ready"
    plain = parse_scenario("name: x\nplatforms:\n  - {name: a, backend: docker, image: i}\n")
    assert [c.header for c in plan_table(plain).columns][-1] == "instances"


# -- one probe, against real sockets on 127.0.0.1 ------------------------------------------


@pytest.fixture
def listener():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def test_a_bound_port_not_listening_is_refused(listener):
    from bench.machines import netprobe

    port = listener.getsockname()[1]
    assert netprobe.tcp("127.0.0.1", port, 1.0, shown=8080) == netprobe.Answer(
        False, "port 8080 refused"
    )


def test_a_listener_that_never_answers_http_times_out(listener):
    from bench.machines import netprobe

    listener.listen()  # the kernel accepts the connection; nothing reads or answers
    port = listener.getsockname()[1]
    assert netprobe.tcp("127.0.0.1", port, 1.0).ok
    answer = netprobe.http_status("127.0.0.1", port, "/", 200, 0.2, shown=80)
    assert answer == netprobe.Answer(False, "port 80 did not answer within 0.2s", timed_out=True)


def test_a_service_that_is_not_http(listener):
    import threading

    from bench.machines import netprobe

    listener.listen()

    def answer_garbage():
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(b"SSH-2.0-not-http\r\n")
        conn.close()

    t = threading.Thread(target=answer_garbage)
    t.start()
    answer = netprobe.http_status("127.0.0.1", listener.getsockname()[1], "/", 200, 2.0, 22)
    t.join()
    assert answer == netprobe.Answer(False, "port 22 answered no HTTP (BadStatusLine)")


def test_an_attempt_cut_by_the_deadline_keeps_the_answer_before_it():
    from bench.machines.netprobe import Answer

    cut = Answer(False, "port 80 did not answer within 0.007s", timed_out=True)
    assert readiness.last_seen("HTTP 404 on /x", cut, 0.007) == "HTTP 404 on /x"
    # A whole attempt's silence, or the first attempt's, is what was seen.
    full = Answer(False, "port 80 did not answer within 1s", timed_out=True)
    assert readiness.last_seen("HTTP 404 on /x", full, readiness.ATTEMPT_TIMEOUT_S) == full.seen
    assert readiness.last_seen(None, cut, 0.007) == cut.seen
    refused = Answer(False, "port 80 refused")
    assert readiness.last_seen("HTTP 404 on /x", refused, 0.007) == "port 80 refused"
