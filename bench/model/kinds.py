"""Where a platform sits on the spectrum from container to VM.

A sample's `kind` is one of KINDS, in the spectrum's order: the report orders its
columns by it. Runs written before the spectrum know only "container" and "vm", which
stay valid. The kind is what the platform is built as; whose kernel an instance really
ran is measured separately (the readiness line's `kernel=`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike, NDArray

NATIVE = "native"  # a plain host process (chroot of the image's tree): the baseline
CONTAINER = "container"  # namespaces and cgroups on the host's kernel (runc, crun)
SANDBOX = "sandbox"  # a container whose system calls a user-space kernel serves (gVisor)
MICROVM = "microvm"  # a VM without PCI or firmware (QEMU microvm, Firecracker's design)
VM = "vm"  # a full virtual machine (libvirt, QEMU q35/pc)

KINDS = (NATIVE, CONTAINER, SANDBOX, MICROVM, VM)
LABELS = {
    NATIVE: "native",
    CONTAINER: "container",
    SANDBOX: "sandboxed container",
    MICROVM: "microVM",
    VM: "VM",
}

# OCI runtimes known to put something between the container and the host's kernel.
# Any other runtime (runc, crun, youki, ...) is a plain container.
_SANDBOX_RUNTIMES = ("runsc",)


def for_runtime(runtime: str | None) -> str:
    """The kind of a container started by the OCI runtime named `runtime`."""
    if runtime and runtime.startswith(_SANDBOX_RUNTIMES):
        return SANDBOX
    return CONTAINER


def own_kernel(kind: str | None) -> bool:
    """Whether an instance of this kind runs a kernel other than the host's: its uptime
    and kernel release are its own."""
    return kind is not None and kind not in (CONTAINER, NATIVE)


def own_kernel_mask(kinds: ArrayLike) -> NDArray[np.bool_]:
    """own_kernel() of each value of an array or pandas Series of kinds (missing: False),
    as a bool array: judged once per distinct kind, not once per instance."""
    import numpy as np

    values = np.asarray(kinds, dtype=object).tolist()
    own = {k for k in set(values) if isinstance(k, str) and own_kernel(k)}
    return np.fromiter((k in own for k in values), dtype=bool, count=len(values))


def is_vm(kind: str | None) -> bool:
    """Whether the kind boots a guest kernel on virtual hardware (accel matters)."""
    return kind in (MICROVM, VM)


def order(kind: str | None) -> int:
    """Position on the spectrum; an unknown kind (a newer bench's) sorts last."""
    return KINDS.index(kind) if kind in KINDS else len(KINDS)


def label(kind: str | None) -> str:
    return LABELS.get(kind or "", kind or "-")


# The project behind a runtime, as people know it: the report names whose kernel a
# sandbox ran ("gVisor's own"), which the runtime's binary name does not say.
_RUNTIME_PROJECTS = {"runsc": "gVisor"}


def runtime_project(runtime: str | None) -> str | None:
    """The project an OCI runtime comes from (runsc: gVisor), or None if bench does not
    know it. Registered names may carry a suffix (runsc-kvm): matched by prefix."""
    for prefix, project in _RUNTIME_PROJECTS.items():
        if runtime and runtime.startswith(prefix):
            return project
    return None
