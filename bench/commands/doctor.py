"""`bench doctor`: can this host run bench, and if not, what to do about it.

The checks every host needs are here; each registered backend adds its own
(Backend.doctor_checks), so a new engine brings its checks with it.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.backends.base import Check, Options
from bench.model.errors import BenchError

__all__ = ["Check", "run_checks"]


def run_checks(options: Options, say: Callable[[str], None] = lambda _msg: None) -> list[Check]:
    """`options`: the backends' CLI options by key (see Backend.cli_options)."""
    from bench.backends import backend_classes
    from bench.machines import images, rootfs

    checks: list[Check] = []
    try:
        bb = rootfs.find_busybox()
        checks.append(Check("busybox", True, f"{bb} ({rootfs.busybox_version(bb)})"))
    except BenchError as e:
        checks.append(Check("busybox", False, str(e), "apt-get install busybox-static"))
    try:
        k = images.find_kernel()
        checks.append(Check("guest kernel", True, f"{k} ({images.kernel_release(k)})"))
    except BenchError as e:
        checks.append(Check("guest kernel", False, str(e), "make demo (fetches one)"))
    for cls in backend_classes():
        checks += cls.doctor_checks(options, say)
    return checks
