"""What the benchmarks share in writing benchmarks/results.md: the host line and the
rewrite of one benchmark's section, keeping the other benchmarks' sections."""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Callable
from pathlib import Path


def host_line() -> str:
    """This machine: hostname, CPU model, cores, memory and kernel."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.node()}: {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, "
        f"kernel {platform.release()}"
    )


def write_section(path: Path, heading: str, text: str, *, first: bool = False) -> None:
    """Replace the section of the results file that starts with `heading` (up to the
    next top-level heading) by `text`, keeping the others. A file without that section
    gets it at its end, or at its start when `first`."""
    old = path.read_text() if path.exists() else ""
    start = old.find(heading)
    if start < 0:
        if first:
            path.write_text(text + ("\n" + old if old else ""))
        else:
            path.write_text(old.rstrip("\n") + "\n\n" + text if old else text)
        return
    nxt = old.find("\n# ", start + 1)
    rest = old[nxt + 1 :] if nxt >= 0 else ""
    path.write_text(old[:start] + text + ("\n" + rest if rest else ""))


def tabulate_runs(doc: str, heading: str, run_text: Callable[[Path], str]) -> None:
    """The command line of a benchmark that tabulates stored runs (`RUN_DIR...
    [--no-write]`): one `run_text` per run under `heading`, printed and written as that
    benchmark's section of results.md."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    text = "\n".join([heading, "", *(run_text(d) for d in args.run_dirs)])
    print(text)
    if not args.no_write:
        write_section(Path(__file__).parent / "results.md", heading, text)
