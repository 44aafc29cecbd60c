"""`bench doctor` names a Docker Engine that predates the fix of moby/moby#42545."""

from __future__ import annotations

import pytest

from bench.backends.docker_backend import DockerBackend, DockerSettings, lacks_deadlock_fix


@pytest.mark.parametrize(
    "version,lacks",
    [
        ("20.10.24+dfsg1", True),  # Debian 12's docker.io
        ("20.10.26", True),
        ("19.03.15", True),
        ("20.10.27", False),
        ("23.0.0", False),
        ("26.1.5+dfsg1", False),  # Debian 13's docker.io
        ("28.0.4", False),
        ("dev", False),  # unreadable: not accused
        ("", False),
    ],
)
def test_versions_before_the_fix(version, lacks):
    assert lacks_deadlock_fix(version) is lacks


def test_doctor_warns_but_does_not_fail_on_an_old_engine():
    backend = DockerBackend(DockerSettings(name="d", backend="docker", image="busybox"))
    (check,) = backend.version_checks({"Version": "20.10.24+dfsg1"})
    assert check.ok and check.warn
    assert "moby/moby#42545" in check.detail and "20.10.24+dfsg1" in check.detail
    assert "20.10.27" in check.fix
    assert backend.version_checks({"Version": "26.1.5+dfsg1"}) == []
