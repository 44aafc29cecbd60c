"""`bench report` on synthetic run directories: every file, the CSV columns, the classic
table, plots skipped when their data is absent, density, host differences."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from bench.model.errors import UsageError
from bench.report import build_report, default_directory, tables
from bench.report.frame import (
    DENSITY_COLUMNS,
    SUMMARY_COLUMNS,
    load_frames,
    max_density,
    more_columns,
)

HOST = {
    "hostname": "lab1",
    "cpu_model": "AMD EPYC",
    "cpu_cores": 2,
    "mem_total_bytes": 24 * 2**30,
    "kernel": "6.18.44-host",
    "os": "Debian GNU/Linux 12",
    "arch": "x86_64",
    "kvm_device": True,
    "bench_version": "0.1.0",
}
ENGINES = {
    "container": {"engine": "docker", "docker_version": "20.10.24", "image_bytes": 1985736},
    "vm": {"engine": "libvirt", "qemu_version": "7.2.22", "accel": "tcg", "image_bytes": 9285632},
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_run(root, run_id, samples, steps, scenario=None, host=None, engines=None):
    d = Path(root) / run_id
    d.mkdir(parents=True)
    meta = {
        "schema_version": 1,
        "bench_version": "0.1.0",
        "run_id": run_id,
        "status": "complete",
        "scenario": scenario
        or {
            "name": "quickstart",
            "platforms": [
                {"name": "container", "backend": "docker", "counts": [1, 4]},
                {"name": "vm", "backend": "libvirt", "counts": None},
            ],
        },
        "scenario_path": "scenarios/quickstart.yaml",
        "host": host or HOST,
        "engines": engines or ENGINES,
    }
    (d / "metadata.json").write_text(json.dumps(meta))
    (d / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (d / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    return d


def sample(platform, n, ready_s, ok=True, **extra):
    vm = platform == "vm"
    return {
        "platform": platform,
        "backend": "libvirt" if vm else "docker",
        "kind": "vm" if vm else "container",
        "n": n,
        "repeat": 0,
        "ok": ok,
        "error": None if ok else "not ready within 120s",
        "ready_s": ready_s if ok else None,
        "guest_kernel": "6.1.0-guest" if vm else HOST["kernel"],
        "accel": "tcg" if vm else None,
        **extra,
    }


def step(platform, n, repeat=0, failures=0, **extra):
    return {
        "platform": platform,
        "kind": "vm" if platform == "vm" else "container",
        "n": n,
        "repeat": repeat,
        "failures": failures,
        **extra,
    }


def quickstart_run(root, run_id="quickstart-20261129-000000-aaaa", **kw):
    """Like a quickstart run from before memory probes: no memory, disk or density."""
    samples = [sample("container", 1, 0.15), sample("container", 1, 0.16)]
    samples += [sample("container", 4, 0.3 + i / 100) for i in range(8)]
    samples += [sample("vm", 1, 4.3), sample("vm", 1, 4.4, ok=False)]
    steps = [step("container", 1), step("container", 4), step("vm", 1, failures=1)]
    return write_run(root, run_id, samples, steps, **kw)


def density_run(root, run_id="density-20261129-000000-bbbb"):
    """Containers searched 1, 2, 4, 8: N=8 broke the SLO. VMs: N=2 refused by memory."""
    mem = {"pss_bytes": 6 * 2**20, "uss_bytes": 3 * 2**20, "rss_bytes": 12 * 2**20}
    samples, steps = [], []
    for n, ready, limit in ((1, 0.15, None), (2, 0.2, None), (4, 0.3, None), (8, 2.5, "slo")):
        samples += [
            sample(
                "container",
                n,
                ready,
                engine_mem_bytes=2**20,
                disk_writable_bytes=8192,
                queued_s=0.01 * i,
                create_s=0.2 * ready,
                start_s=0.5 * ready,
                index=i,
                **mem,
            )
            for i in range(n)
        ]
        steps.append(
            step(
                "container",
                n,
                status="ran",
                limit=limit,
                host_drop_per_instance_bytes=5 * 2**20,
                disk_growth_bytes=n * 12288,
                launch_rate_per_s=n / ready,
            )
        )
    samples.append(
        sample(
            "vm",
            1,
            4.0,
            pss_bytes=200 * 2**20,
            disk_writable_bytes=2 * 2**20,
            rss_bytes=1,
            queued_s=0.0,
            create_s=0.5,
            start_s=0.8,
            guest_uptime_s=1.5,
        )
    )
    steps.append(step("vm", 1, status="ran", limit=None, host_drop_per_instance_bytes=180 * 2**20))
    steps.append(step("vm", 2, status="refused", limit="memory_reserve"))
    scenario = {
        "name": "density",
        "density": {"start": 1, "factor": 2, "max": 64, "slo": {"ready_p95": 1.0}},
        "platforms": [
            {"name": "container", "backend": "docker", "counts": None, "density": None},
            {"name": "vm", "backend": "libvirt", "counts": None, "density": {"max": 4}},
        ],
    }
    return write_run(root, run_id, samples, steps, scenario=scenario)


def assert_png(path: Path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    from PIL import Image

    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.size[0] > 300 and im.size[1] > 200


def test_report_of_a_run_without_memory_writes_every_table_and_skips_absent_plots(tmp_path):
    run = quickstart_run(tmp_path / "results")
    out = tmp_path / "report"
    report = build_report([run], out)
    names = sorted(p.name for p in report.files)
    assert names == [
        "containers-vs-vms.md",
        "ready-distribution.png",
        "ready-percentiles.png",
        "report.html",
        "summary.csv",
        "summary.md",
    ]
    for name in ("ready-distribution.png", "ready-percentiles.png"):
        assert_png(out / name)
    for name in ("memory-per-instance.png", "density.png", "disk-per-instance.png"):
        assert not (out / name).exists()
        assert any(n.startswith(f"{name} not drawn:") for n in report.notes)
    with (out / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == SUMMARY_COLUMNS + more_columns()  # no density columns
    vm = next(r for r in rows if r["platform"] == "vm")
    assert (vm["samples"], vm["failures"], vm["accel"]) == ("2", "1", "tcg")
    assert float(vm["ready_p50_s"]) == 4.3  # the failed instance is not in the statistics
    assert vm["mem_host_per_instance_mib"] == "" and vm["disk_per_instance_mib"] == ""
    c4 = next(r for r in rows if r["platform"] == "container" and r["n"] == "4")
    assert float(c4["ready_max_s"]) == pytest.approx(0.37)

    classic = (out / "containers-vs-vms.md").read_text()
    assert "shared with the host (6.18.44-host)" in classic
    assert "guest's own (6.1.0-guest)" in classic
    assert "| runtime" not in classic  # no sample recorded one: no empty row
    # image_bytes 1985736 and 9285632, in binary units like every size bench prints
    assert "| 1.9 MiB" in classic and "| 8.9 MiB" in classic and " MB" not in classic
    assert "MiBs vs GiBs" in classic
    assert "TCG" in classic and "not representative of" in classic
    assert "not measured" in classic and "not a density run" in classic
    summary_md = (out / "summary.md").read_text()
    assert "| platform" in summary_md and "TCG" in summary_md
    # Named for reading; the CSV keeps the machine names.
    assert "ready p95 (s)" in summary_md and "ready_p95_s" not in summary_md

    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    assert "memory-per-instance.png not drawn" in html
    assert 'src="http' not in html and "<link" not in html  # self-contained
    assert "20.10.24" in html and "AMD EPYC" in html and "tcg" in html


def test_density_run_fills_density_columns_and_draws_every_plot(tmp_path):
    run = density_run(tmp_path / "results")
    out = tmp_path / "report"
    report = build_report([run], out)
    for name in (
        "ready-distribution.png",
        "ready-percentiles.png",
        "memory-per-instance.png",
        "density.png",
        "disk-per-instance.png",
    ):
        assert_png(out / name)
    assert not [n for n in report.notes if "not drawn" in n]
    with (out / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == SUMMARY_COLUMNS + DENSITY_COLUMNS + more_columns()
    c = [r for r in rows if r["platform"] == "container"]
    assert {(r["max_density"], r["density_limit"]) for r in c} == {("4", "slo")}
    vm = [r for r in rows if r["platform"] == "vm"]
    assert [(r["n"], r["samples"]) for r in vm] == [("1", "1"), ("2", "0")]  # refused: no samples
    assert {(r["max_density"], r["density_limit"]) for r in vm} == {("1", "memory_reserve")}
    assert float(c[0]["mem_host_per_instance_mib"]) == 5.0
    assert float(c[0]["mem_pss_per_instance_mib"]) == 6.0
    assert float(c[0]["disk_per_instance_mib"]) == pytest.approx(8192 / 2**20)
    classic = (out / "containers-vs-vms.md").read_text()
    assert "4 (stopped by slo; restart mode)" in classic
    assert "1 (stopped by memory_reserve; restart mode)" in classic
    assert "200.0 MiB (N=1, n=1)" in classic


def test_density_columns_are_empty_for_a_counts_run_next_to_a_density_run(tmp_path):
    runs = [quickstart_run(tmp_path / "r"), density_run(tmp_path / "r")]
    build_report(runs, tmp_path / "out")
    with (tmp_path / "out" / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    quick = [r for r in rows if r["run"].startswith("quickstart")]
    assert quick and all(r["max_density"] == "" for r in quick)


@pytest.mark.parametrize(
    "steps,expected",
    [
        # every step fine: the search reached its max
        (
            [step("c", 1, status="ran", limit=None), step("c", 2, status="ran", limit=None)],
            (2, "max"),
        ),
        # a failed instance at N=2 makes N=2 not count, even if no limit is named
        (
            [step("c", 1, status="ran", limit=None), step("c", 2, failures=1, limit=None)],
            (1, "max"),
        ),
        # repeats: one bad repeat of N=4 disqualifies N=4
        (
            [
                step("c", 4, 0, status="ran", limit=None),
                step("c", 4, 1, status="ran", limit="timeout"),
            ],
            (0, "timeout"),
        ),
        # the first limit broken is the one reported
        (
            [
                step("c", 1, status="ran", limit=None),
                step("c", 2, status="ran", limit="slo"),
                step("c", 4, status="refused", limit="memory_reserve"),
            ],
            (1, "slo"),
        ),
    ],
)
def test_max_density(steps, expected):
    assert max_density(steps) == expected


def test_report_of_runs_from_two_hosts_calls_out_the_differences(tmp_path):
    a = quickstart_run(tmp_path / "r", "quickstart-20261129-000000-aaaa")
    b = quickstart_run(
        tmp_path / "r",
        "quickstart-20261130-000000-bbbb",
        host={**HOST, "hostname": "lab2", "kernel": "6.8.0"},
        engines={**ENGINES, "container": {**ENGINES["container"], "docker_version": "24.0.7"}},
    )
    out = tmp_path / "out"
    report = build_report([a, b], out)
    assert "the runs differ in host, engine or scenario: see report.html" in report.notes
    html = (out / "report.html").read_text()
    assert "These runs differ in host, engine or scenario" in html
    for text in ("host.hostname", "lab2", "host.kernel", "container.docker_version", "24.0.7"):
        assert text in html
    md = (out / "summary.md").read_text()
    assert "Differences between the runs" in md and "24.0.7" in md
    with (out / "summary.csv").open() as f:
        hosts = {r["run"]: r["host"] for r in csv.DictReader(f)}
    assert hosts == {a.name: "lab1", b.name: "lab2"}
    # Legends name the run (without the shared scenario prefix) and the accel.
    assert_png(out / "ready-percentiles.png")


def test_report_shows_what_compare_warns_about_and_what_is_only_shown(tmp_path):
    from bench.judge.compare import compare_runs
    from bench.model.results import load_run
    from bench.report import tables
    from bench.report.frame import load_frames

    a = quickstart_run(tmp_path / "r", "quickstart-20261129-000000-aaaa")
    b = quickstart_run(
        tmp_path / "r",
        "quickstart-20261130-000000-bbbb",
        host={**HOST, "kernel": "6.8.0", "mem_total_bytes": 32 * 2**30},
        engines={**ENGINES, "vm": {**ENGINES["vm"], "qemu_version": "8.2.0"}},
    )
    diff = tables.host_differences(load_frames([a, b]))
    assert diff.loc["host.kernel"].tolist() == ["6.18.44-host", "6.8.0", "must match"]
    assert diff.loc["host.mem_total_bytes"].tolist() == ["24.0 GiB", "32.0 GiB", "shown"]
    assert diff.loc["vm.qemu_version"].tolist() == ["7.2.22", "8.2.0", "must match"]
    assert list(diff.index) == ["host.mem_total_bytes", "host.kernel", "vm.qemu_version"]
    warnings = compare_runs(load_run(a), load_run(b)).warnings
    assert [w.split(" (")[0] for w in warnings] == [
        "the runs come from different hosts",
        "platform 'vm': engine versions differ",
        "baseline has failed instances",  # not a matter of setup: compare's own warning
        "current has failed instances",
    ]


def test_default_directory():
    assert default_directory(["quickstart-x"], ["quickstart"]) == Path("reports/quickstart-x")
    many = default_directory(["q-1", "q-2"], ["q", "q"])
    assert many.parent == Path("reports") and many.name.startswith("q-2runs-")
    assert default_directory(["q-2", "q-1"], ["q", "q"]) == many  # order does not matter


def test_not_a_run_directory_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not a bench run directory"):
        build_report([tmp_path], tmp_path / "out")
    run = quickstart_run(tmp_path / "r")
    with pytest.raises(UsageError, match="given twice"):
        build_report([run, run], tmp_path / "out")


def test_stale_plots_from_an_older_report_are_removed(tmp_path):
    out = tmp_path / "out"
    build_report([density_run(tmp_path / "r")], out)
    assert (out / "density.png").exists()
    build_report([quickstart_run(tmp_path / "r")], out)
    assert not (out / "density.png").exists()


# -- the spectrum: container, sandboxed container, microVM, VM -------------------------

GVISOR_KERNEL = "4.4.0"
# name, backend, kind, runtime, kernel reported, accel: listed (and run) out of order.
SPECTRUM = [
    ("vm", "libvirt", "vm", None, "6.1.0-guest", "tcg"),
    ("runsc", "docker", "sandbox", "runsc", GVISOR_KERNEL, None),
    ("microvm", "qemu", "microvm", None, "6.1.0-guest", "tcg"),
    ("runc", "docker", "container", "runc", HOST["kernel"], None),
]
SPECTRUM_ENGINES = {
    "vm": ENGINES["vm"],
    "runsc": {"engine": "docker", "runtime": "runsc", "runtime_version": "release-20221219.0"},
    "microvm": {"engine": "qemu", "qemu_version": "7.2.22", "machine": "microvm"},
    "runc": {"engine": "docker", "runtime": "runc", "runtime_version": "1.1.5"},
}


def spectrum_run(root, run_id="spectrum-20261201-000000-cccc"):
    samples, steps = [], []
    for name, backend, kind, runtime, kernel, accel in SPECTRUM:
        for n in (1, 4):
            samples += [
                sample(
                    name,
                    n,
                    0.2 * n,
                    backend=backend,
                    kind=kind,
                    runtime=runtime,
                    guest_kernel=kernel,
                    accel=accel,
                )
                for _ in range(n)
            ]
            steps.append(step(name, n, kind=kind, backend=backend))
    scenario = {
        "name": "spectrum",
        "platforms": [{"name": p[0], "backend": p[1]} for p in SPECTRUM],
    }
    return write_run(root, run_id, samples, steps, scenario=scenario, engines=SPECTRUM_ENGINES)


def test_the_table_has_one_column_per_platform_from_container_to_vm(tmp_path):
    from bench.report import plots, tables
    from bench.report.frame import load_frames

    frames = load_frames([spectrum_run(tmp_path)])
    table = tables.classic_table(frames)
    assert list(table.columns) == ["runc", "runsc", "microvm", "vm", "usual claim"]
    platforms = table.drop(columns="usual claim")
    assert platforms.loc["kind"].tolist() == ["container", "sandboxed container", "microVM", "VM"]
    assert platforms.loc["kernel"].tolist() == [
        "shared with the host (6.18.44-host)",
        "gVisor's own (4.4.0)",
        "guest's own (6.1.0-guest)",
        "guest's own (6.1.0-guest)",
    ]
    assert platforms.loc["runtime"].tolist() == [
        "runc 1.1.5",
        "runsc release-20221219.0 (gVisor)",
        "-",
        "-",
    ]
    assert platforms.loc["accel"].tolist() == ["native", "native", "tcg", "tcg"]
    assert list(table.index[:4]) == ["kind", "accel", "kernel", "runtime"]
    # The summary, the plots' series and the engines table follow the same order.
    assert frames.summary["platform"].drop_duplicates().tolist() == list(platforms.columns)
    assert plots.series_order(frames) == ["runc", "runsc", "microvm [tcg]", "vm [tcg]"]
    (_, _, engines) = tables.run_metadata(frames)[0]
    assert list(engines.columns) == list(platforms.columns)
    assert tables.any_tcg(frames)


def test_the_spectrum_report_renders_every_file_in_order(tmp_path):
    out = tmp_path / "report"
    build_report([spectrum_run(tmp_path / "results")], out)
    classic = (out / "containers-vs-vms.md").read_text()
    header = next(line for line in classic.splitlines() if line.startswith("| measured"))
    assert [c.strip() for c in header.split("|")[2:-2]] == ["runc", "runsc", "microvm", "vm"]
    assert "sandboxed containers" in classic  # the note says what the columns are
    with (out / "summary.csv").open() as f:
        order = list(dict.fromkeys(r["platform"] for r in csv.DictReader(f)))
    assert order == ["runc", "runsc", "microvm", "vm"]
    html = (out / "report.html").read_text()
    positions = [html.index(s) for s in ("shared with the host", "gVisor's own", "guest's own")]
    assert positions == sorted(positions)
    # "measured" heads the row names, not an empty row of its own; a kernel release
    # never breaks at its hyphens.
    assert re.search(r"<th>measured</th>\s*<th>runc</th>\s*<th>runsc</th>", html)
    assert '<span class="nowrap">6.1.0-guest</span>' in html
    for name in ("ready-distribution.png", "ready-percentiles.png"):
        assert_png(out / name)


def test_every_kind_has_its_own_marker():
    from bench.model import kinds
    from bench.report.plots import KIND_MARKERS

    assert set(KIND_MARKERS) == set(kinds.KINDS)
    assert len(set(KIND_MARKERS.values())) == len(kinds.KINDS)


def test_a_microvm_under_tcg_gets_the_tcg_note(tmp_path):
    from bench.report import tables
    from bench.report.frame import load_frames

    samples = [sample("m", 1, 2.0, backend="qemu", kind="microvm", accel="tcg")]
    scenario = {"name": "m", "platforms": [{"name": "m", "backend": "qemu"}]}
    run = write_run(tmp_path, "m-20261201-000000-dddd", samples, [step("m", 1)], scenario)
    assert tables.any_tcg(load_frames([run]))


@pytest.mark.parametrize(
    ("kernels", "kind", "runtimes", "expected"),
    [
        (["6.18.44-host"] * 2, "container", ["runc"], "shared with the host (6.18.44-host)"),
        (["6.18.44-host"], "sandbox", ["runsc"], "shared with the host (6.18.44-host)"),
        (["4.4.0", "4.4.0"], "sandbox", ["runsc"], "gVisor's own (4.4.0)"),
        (["4.4.0"], "sandbox", ["runsc-kvm"], "gVisor's own (4.4.0)"),
        (["5.15.0-kata"], "sandbox", ["kata"], "kata's own (5.15.0-kata)"),
        (["4.4.0"], "sandbox", [], "the sandbox's own (4.4.0)"),
        (["6.1.0-guest"], "microvm", [], "guest's own (6.1.0-guest)"),
        (["6.1.0-guest"], "vm", [], "guest's own (6.1.0-guest)"),
        (["6.1.0-a", "6.1.0-b"], "vm", [], "guest's own (6.1.0-a, 6.1.0-b)"),
        (
            ["4.4.0", "6.18.44-host"],
            "sandbox",
            ["runsc"],
            "mixed (4.4.0, 6.18.44-host; host 6.18.44-host)",
        ),
        ([], "sandbox", ["runsc"], "not reported"),
        ([], "vm", [], "not reported"),
    ],
)
def test_kernel_cell(kernels, kind, runtimes, expected):
    from bench.report.tables import kernel_cell

    assert kernel_cell(kernels, "6.18.44-host", kind, runtimes) == expected


def test_kernel_cell_without_the_hosts_kernel_says_so():
    from bench.report.tables import kernel_cell

    assert kernel_cell(["4.4.0"], None, "sandbox", ["runsc"]) == (
        "4.4.0 (the host's was not recorded)"
    )


def test_samples_without_a_kind_still_render(tmp_path):
    from bench.report import tables
    from bench.report.frame import load_frames

    bare = [{"platform": "p", "n": 1, "ok": True, "ready_s": 0.2, "guest_kernel": "6.18.44-host"}]
    scenario = {"name": "bare", "platforms": [{"name": "p", "backend": "docker"}]}
    run = write_run(
        tmp_path, "bare-20261201-000000-eeee", bare, [{"platform": "p", "n": 1}], scenario
    )
    frames = load_frames([run])
    assert not tables.any_tcg(frames)
    column = tables.classic_table(frames)["p"]
    assert (column["kind"], column["accel"]) == ("-", "native")
    assert column["kernel"] == "shared with the host (6.18.44-host)"


def test_the_page_is_for_people_viewport_human_names_short_digests_code(tmp_path):
    engines = {
        **ENGINES,
        "container": {**ENGINES["container"], "image_id": "sha256:" + "ab" * 32},
    }
    report = build_report([quickstart_run(tmp_path / "results", engines=engines)], tmp_path / "r")
    html = (report.directory / "report.html").read_text()
    assert "<meta name='viewport' content='width=device-width, initial-scale=1'>" in html
    assert "ready p95 (s)" in html and ">ready_p95_s<" not in html
    assert f'<abbr title="sha256:{"ab" * 32}"><code>abababababab…</code></abbr>' in html
    assert ">memory<" in html and "mem_total_bytes" not in html
    text = re.sub(r"<[^>]+>", "", html.split("<body>")[1])
    assert "`" not in text, "backticks left in a note"
    # No host column, no hosts.png, no note about it: one host keeps its shape.
    assert ">host<" not in html.split("<h2>Plots</h2>")[0].split("Summary per run")[1]
    assert not (report.directory / "hosts.png").exists()
    assert not [n for n in report.notes if "hosts.png" in n]


def test_two_runs_show_the_change_and_compares_verdict(tmp_path):
    a = quickstart_run(tmp_path / "results", "quickstart-20261129-000000-aaaa")
    b = quickstart_run(tmp_path / "results", "quickstart-20261129-010000-dddd")
    html = (build_report([a, b], tmp_path / "r").directory / "report.html").read_text()
    assert "<h2>Change between runs</h2>" in html and "+0.0%" in html
    # compare's own verdict: one baseline run cannot rule out a 10% change.
    assert "Verdict of <code>bench compare</code>" in html and "inconclusive" in html


def test_a_run_on_two_hosts_has_a_table_per_host_and_hosts_png(tmp_path):
    from tests.integration.test_report_browser import multi_host_run

    report = build_report([multi_host_run(tmp_path / "results")], tmp_path / "r")
    html = (report.directory / "report.html").read_text()
    assert "<h3>On host lab1</h3>" in html and "<h3>On host lab2</h3>" in html
    assert_png(report.directory / "hosts.png")
    for name in ("boot-phases.png", "timeline.png"):
        assert_png(report.directory / name)
    frames = load_frames([tmp_path / "results" / "quickstart-20261129-000000-cccc"])
    assert frames.hosts == ["lab1", "lab2"]
    # Never pooled: each host's container at N=4 is its own series.
    assert set(frames.samples["series"]) >= {"container @ lab1", "container @ lab2"}
    lab2 = tables.classic_table(frames, "lab2")
    assert lab2.loc["boot p50 / p95, largest N", "container"].endswith("(N=4, n=4)")
