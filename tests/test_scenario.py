from pathlib import Path

import pytest

from bench.model.errors import ScenarioError
from bench.plan.scenario import load_scenario, parse_scenario

REPO = Path(__file__).resolve().parent.parent


def test_quickstart_accepted_as_written():
    sc = load_scenario(REPO / "scenarios" / "quickstart.yaml").scenario
    assert sc.name == "quickstart"
    assert sc.repeat == 2 and sc.timeout == 120.0 and sc.counts == [1, 2]
    assert sc.launch.concurrency == 4
    container, vm = sc.platforms
    assert (container.backend, container.image, container.memory) == (
        "docker",
        "busybox",
        128 * 2**20,
    )
    assert container.cpus == 1 and container.counts == [1, 4, 16]
    assert (vm.backend, vm.uri, vm.accel, vm.memory, vm.vcpus) == (
        "libvirt",
        "qemu:///system",
        "auto",
        256 * 2**20,
        1,
    )
    # Platform counts override the scenario's; every step repeated twice.
    plan = sc.plan()
    assert [(s.platform.name, s.n) for s in plan[::2]] == [
        ("container", 1),
        ("container", 4),
        ("container", 16),
        ("vm", 1),
        ("vm", 2),
    ]
    assert len(plan) == 10


def test_spectrum_has_the_same_userland_from_container_to_vm():
    from bench.backends import backend_class

    sc = load_scenario(REPO / "scenarios" / "spectrum.yaml").scenario
    assert sc.counts == [1, 4] and sc.repeat >= 1
    assert [p.name for p in sc.platforms] == ["runc", "podman", "runsc", "microvm", "vm"]
    assert {p.image for p in sc.platforms} == {"busybox"}  # one userland everywhere
    runc, podman, runsc, microvm, vm = sc.platforms
    assert (runc.backend, runc.runtime) == ("docker", "runc")
    assert (podman.backend, podman.runtime) == ("podman", "runc")
    assert (runsc.backend, runsc.runtime) == ("docker", "runsc")
    assert (microvm.backend, microvm.machine) == ("qemu", "microvm")
    assert vm.backend == "libvirt"
    # What each backend makes of its settings: one platform per kind, in the spectrum's order.
    kinds = [backend_class(p.backend)(p).kind for p in sc.platforms]
    assert kinds == ["container", "container", "sandbox", "microvm", "vm"]
    # A VM boots in seconds under TCG, 4 at once on 2 cores several times that.
    assert 30 <= sc.timeout <= 120


def test_defaults():
    sc = parse_scenario("name: x\nplatforms:\n  - {name: c, backend: docker, image: busybox}\n")
    p = sc.platforms[0]
    assert p.ready.marker == "BENCH_READY" and p.network == "none"
    assert sc.on_failure == "continue"


def test_ready_marker_shorthand_and_command_argv():
    sc = parse_scenario(
        "name: x\nplatforms:\n"
        "  - name: c\n    backend: docker\n    image: nginx:1.27\n"
        "    ready: 'start worker'\n"
        "    command: sh -c 'echo hi; rm -rf / && true'\n"
    )
    p = sc.platforms[0]
    assert p.ready.marker == "start worker"
    # Split into argv words, never handed to a shell by bench.
    assert p.command == ["sh", "-c", "echo hi; rm -rf / && true"]


def _error(text: str) -> str:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text, "s.yaml")
    msg = str(e.value)
    assert "\n" not in msg
    return msg


BASE = "name: x\nplatforms:\n  - name: c\n    backend: docker\n    image: busybox\n"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("name: [unclosed\n", "s.yaml:2: YAML syntax error"),
        (BASE + "    colour: red\n", "s.yaml:6: platforms[0].colour: unknown key"),
        (BASE + "repeat: two\n", "s.yaml:6: repeat: "),
        (BASE + "counts: [0]\n", "s.yaml:6: counts[0]: "),
        (BASE + "counts: [-3]\n", "counts[0]"),
        (BASE + "counts: [1000000000]\n", "counts[0]"),
        (BASE + "    memory: 12XB\n", "s.yaml:6: platforms[0].memory: bad size '12XB'"),
        (BASE + "timeout: 120\n", "timeout: duration 120 has no unit"),
        (
            "name: x\nplatforms:\n  - {name: c, backend: podmanx, image: b}\n",
            "platforms[0].backend: unknown backend 'podmanx'",
        ),
        ("name: x\nplatforms: []\n", "platforms: "),
        (
            "name: x\nplatforms:\n  - {name: ../../etc, backend: docker, image: b}\n",
            "platforms[0].name",
        ),
        (
            "name: x\nplatforms:\n  - {name: '</name><devices>', backend: docker, image: b}\n",
            "platforms[0].name",
        ),
        (BASE + "  - name: c\n    backend: docker\n    image: busybox\n", "used twice"),
        (
            "name: x\nplatforms:\n  - {name: c, backend: docker}\n",
            "platforms[0].image: required key is missing",
        ),
        ("- just\n- a list\n", "expected a mapping"),
        (BASE + "density: {max: 8}\ncounts: [1]\n", "give counts or density, not both"),
        (BASE + "density: {max: 8, factor: 2, step: 4}\n", "density: give factor"),
        (BASE + "density: {max: 8, start: 16}\n", "start 16 is above max 8"),
        (BASE + "density: {max: 8, factor: 1}\n", "density.factor: "),
        (BASE + "density: {factor: 2}\n", "density.max: required key is missing"),
        (BASE + "    image: again\n", "s.yaml:6: platforms[0].image: duplicate key"),
        # Messages in the file's words: what was written, what to write instead.
        (
            BASE.replace("platforms:", "platfroms:"),
            "s.yaml:2: platfroms: unknown key: did you mean platforms?",
        ),
        (
            BASE + "    memroy: 1GiB\n",
            "s.yaml:6: platforms[0].memroy: unknown key: did you mean memory?",
        ),
        (
            BASE + "counts: '1,2,4'\n",
            "counts: expected a list, got the text '1,2,4': write [1, 2, 4]",
        ),
        (BASE + "counts: 1,2,4\n", "write [1, 2, 4]"),
        (BASE + "counts: 3\n", "counts: expected a list, got 3: write [3]"),
        (
            "name: x\nplatforms:\n  c:\n    backend: docker\n",
            "s.yaml:2: platforms: expected a list: write each platform as `- name: ...`",
        ),
        (BASE + "    cpus: 50%\n", "platforms[0].cpus: expected a number, got '50%'"),
        (
            BASE.replace("name: x", "name: no"),
            's.yaml:1: name: YAML read no as false, not text: quote it, e.g. name: "no"',
        ),
        (BASE + "repeat: 0\n", "repeat: should be greater than or equal to 1, got 0"),
        (BASE + "on_failure: maybe\n", "on_failure: expected 'continue' or 'stop', got 'maybe'"),
        (
            BASE + "---\n" + BASE,
            "s.yaml:6: a second YAML document starts here (---): one scenario per file",
        ),
        ("name: x\nplatforms:\n\t- name: c\n", "s.yaml:3: tab character: indent YAML with spaces"),
        (
            BASE + "counts: [1]\ndensity: {max: 8}\n",
            "s.yaml:7: density: give counts or density, not both",
        ),
        (
            BASE + "    memory: 512\n",
            "platforms[0].memory: size 512 has no unit: write e.g. 512MiB",
        ),
        ("description: " + "d" * 2001 + "\n" + BASE, "description: longer than 2000 characters"),
    ],
)
def test_bad_scenarios_name_the_key(text, expected):
    assert expected in _error(text)


def test_durations_combine_units():
    s = parse_scenario(BASE + "timeout: 1m30s\nsettle: 1s500ms\n")
    assert (s.timeout, s.settle) == (90.0, 1.5)


def test_x_keys_are_ignored_and_hold_anchors():
    s = parse_scenario(
        "name: x\nx-box: &box {backend: docker, image: busybox}\n"
        "platforms:\n  - {<<: *box, name: c}\n"
    )
    assert (s.platforms[0].name, s.platforms[0].image) == ("c", "busybox")


def test_missing_file():
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario("/nonexistent/scenario.yaml")
