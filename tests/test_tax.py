"""bench.report.tax: the libvirt tax table from fabricated runs (no engine)."""

import json
import math
import re
from pathlib import Path

import pytest

from bench.model.results import Run
from bench.report.frame import load_frames
from bench.report.render_markdown import tax_markdown
from bench.report.tax import libvirt_tax, tax_pairs

MIB = 2**20
CMDLINE = "console=ttyS0 panic=-1 quiet loglevel=3 acpi=off"


def platform(name, backend, **kw):
    p = {
        "name": name,
        "backend": backend,
        "image": "busybox",
        "memory": 256 * MIB,
        "vcpus": 1,
        "accel": "auto",
        "cmdline": CMDLINE,
    }
    if backend == "qemu":
        p["machine"] = "pc"
    p.update(kw)
    return p


def engine(backend, **kw):
    e = {"engine": backend, "accel": "tcg", "boot": "kernel", "rootfs_sha256": "abc"}
    if backend == "qemu":
        e.update(machine="pc", cmdline=CMDLINE)
    e.update(kw)
    return e


def make_run(platforms, engines, steps_spec, run_id="libvirt-tax-20261130-000000-aaaa"):
    """steps_spec: (platform, backend, n, ready_s list, pss MiB, host MiB/instance,
    teardown_s, storage bytes) per step, in run order."""
    samples, steps = [], []
    for i, (name, backend, n, ready, pss, host, teardown, storage) in enumerate(steps_spec):
        for k, r in enumerate(ready):
            samples.append(
                {
                    "run_id": run_id,
                    "step": i,
                    "platform": name,
                    "backend": backend,
                    "kind": "vm",
                    "n": n,
                    "index": k,
                    "ok": True,
                    "create_s": 0.05 if backend == "qemu" else 0.3,
                    "start_s": 0.06 if backend == "qemu" else 0.32,
                    "ready_s": r,
                    "guest_uptime_s": 1.5,
                    "pss_bytes": int(pss * MIB),
                    "disk_writable_bytes": 0,
                    "accel": "tcg",
                }
            )
        steps.append(
            {
                "run_id": run_id,
                "step": i,
                "platform": name,
                "backend": backend,
                "kind": "vm",
                "n": n,
                "status": "ran",
                "failures": 0,
                "host_drop_per_instance_bytes": host * MIB,
                "teardown_s": teardown,
                "disk_growth_bytes": storage,
            }
        )
    meta = {
        "schema_version": 2,
        "run_id": run_id,
        "status": "complete",
        "scenario": {"name": "libvirt-tax", "platforms": platforms},
        "engines": engines,
    }
    return Run(Path(run_id), meta, samples, steps)


def frames_of(runs, root):
    """Through the files and bench's own loader, as a report reads a run."""
    dirs = []
    for run in runs:
        d = Path(root) / run.run_id
        d.mkdir()
        (d / "metadata.json").write_text(json.dumps(run.metadata))
        for name, rows in (("samples", run.samples), ("steps", run.steps)):
            (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        dirs.append(d)
    return load_frames(dirs)


PLATFORMS = [platform("direct", "qemu"), platform("lv", "libvirt")]
ENGINES = {"direct": engine("qemu"), "lv": engine("libvirt")}
# Two N, three steps each per platform; libvirt is 0.4 s slower to ready, 50 MiB more in
# the host view, 1 s per instance slower to tear down, 4 KiB more storage.
SPEC = [
    ("direct", "qemu", 1, [4.0], 200, 90, 0.01, 12288),
    ("lv", "libvirt", 1, [4.4], 200, 140, 1.0, 16384),
    ("direct", "qemu", 1, [4.2], 201, 92, 0.01, 12288),
    ("lv", "libvirt", 1, [4.6], 201, 142, 1.0, 16384),
    ("direct", "qemu", 1, [4.1], 202, 88, 0.01, 12288),
    ("lv", "libvirt", 1, [4.5], 202, 138, 1.0, 16384),
    ("direct", "qemu", 2, [5.0, 5.2], 190, 180, 0.02, 2 * 12288),
    ("lv", "libvirt", 2, [5.5, 5.7], 190, 230, 2.0, 2 * 16384),
    ("direct", "qemu", 2, [5.1, 5.3], 191, 182, 0.02, 2 * 12288),
    ("lv", "libvirt", 2, [5.6, 5.8], 191, 232, 2.0, 2 * 16384),
    ("direct", "qemu", 2, [5.0, 5.4], 192, 178, 0.02, 2 * 12288),
    ("lv", "libvirt", 2, [5.5, 5.9], 192, 228, 2.0, 2 * 16384),
]


def row(table, n, measure):
    rows = table[(table["n"] == n) & (table["measure"] == measure)]
    assert len(rows) == 1, (n, measure)
    return rows.iloc[0]


def test_tax_table_gives_medians_their_difference_and_intervals(tmp_path):
    tax = libvirt_tax(frames_of([make_run(PLATFORMS, ENGINES, SPEC)], tmp_path))
    assert tax is not None
    t = tax.table
    assert sorted(t["n"].unique()) == [1, 2]

    r = row(t, 1, "ready_s")
    assert r.qemu == pytest.approx(4.1)
    assert r.libvirt == pytest.approx(4.5)
    assert r.tax == pytest.approx(0.4)
    assert r.tax_pct == pytest.approx(100 * 0.4 / 4.1)
    assert (r.qemu_steps, r.libvirt_steps) == (3, 3)
    # Bootstrap over steps: the interval holds the median and lies within the steps' range.
    assert 4.0 <= r.qemu_low <= r.qemu <= r.qemu_high <= 4.2
    assert 4.4 <= r.libvirt_low <= r.libvirt <= r.libvirt_high <= 4.6
    assert 0.2 <= r.tax_low <= r.tax <= r.tax_high <= 0.6

    r = row(t, 2, "ready_s")  # pooled instances of every step of N=2
    assert r.qemu == pytest.approx(5.15)
    assert r.tax == pytest.approx(0.5)

    r = row(t, 1, "mem_host_per_instance_mib")  # a step measure: one value per step
    assert (r.qemu, r.libvirt, r.tax) == pytest.approx((90, 140, 50))
    r = row(t, 2, "teardown_per_instance_s")  # per step, divided by N
    assert (r.qemu, r.libvirt) == pytest.approx((0.01, 1.0))
    r = row(t, 2, "storage_per_instance_kib")
    assert (r.qemu, r.libvirt, r.tax) == pytest.approx((12, 16, 4))
    r = row(t, 1, "create_s")
    assert r.tax == pytest.approx(0.25)
    r = row(t, 1, "disk_per_instance_mib")
    assert r.tax == 0 and math.isnan(r.tax_pct)  # no relative change from zero


def test_markdown_has_a_table_per_n_with_units_and_intervals(tmp_path):
    md = tax_markdown(libvirt_tax(frames_of([make_run(PLATFORMS, ENGINES, SPEC)], tmp_path)))
    assert "lv (libvirt) vs direct (direct QEMU), machine pc, tcg" in md
    assert md.count("| N=1 ") == 1 and md.count("| N=2 ") == 1
    line = next(x for x in md.splitlines() if x.startswith("| ready_s") and "+0.40 s" in x)
    assert "4.10 s [" in line and "(3)" in line
    line = next(x for x in md.splitlines() if x.startswith("| mem_host_per_instance_mib"))
    assert "+50.0 MiB" in line


def test_one_step_per_platform_gives_no_interval(tmp_path):
    tax = libvirt_tax(frames_of([make_run(PLATFORMS, ENGINES, SPEC[:2])], tmp_path))
    r = row(tax.table, 1, "ready_s")
    assert r.tax == pytest.approx(0.4)
    assert math.isnan(r.tax_low) and math.isnan(r.qemu_high)
    assert re.search(r"\| \+0\.40 s +\|", tax_markdown(tax))  # no interval after it


@pytest.mark.parametrize(
    "change",
    [
        {"direct": platform("direct", "qemu", machine="microvm")},  # libvirt's is pc
        {"lv": platform("lv", "libvirt", memory=512 * MIB)},
        {"lv": platform("lv", "libvirt", vcpus=2)},
        {"lv": platform("lv", "libvirt", cmdline=None)},
        {"lv": platform("lv", "libvirt", image=None, kernel="/boot/other")},
    ],
)
def test_a_different_guest_is_no_tax_pair(change, tmp_path):
    platforms = [change.get(p["name"], p) for p in PLATFORMS]
    engines = dict(ENGINES)
    if "direct" in change and change["direct"].get("machine") == "microvm":
        engines["direct"] = engine("qemu", machine="microvm")
    assert libvirt_tax(frames_of([make_run(platforms, engines, SPEC)], tmp_path)) is None


def test_different_accel_or_rootfs_is_no_tax_pair(tmp_path):
    for key, v in (("accel", "kvm"), ("rootfs_sha256", "other")):
        engines = {"direct": engine("qemu"), "lv": engine("libvirt", **{key: v})}
        (tmp_path / key).mkdir()
        frames = frames_of([make_run(PLATFORMS, engines, SPEC)], tmp_path / key)
        assert libvirt_tax(frames) is None


def test_a_run_without_both_backends_has_no_tax(tmp_path):
    only_qemu = [s for s in SPEC if s[1] == "qemu"]
    assert libvirt_tax(frames_of([make_run(PLATFORMS, ENGINES, only_qemu)], tmp_path)) is None


def test_libvirt_machine_named_in_its_platform_must_match(tmp_path):
    platforms = [platform("direct", "qemu", machine="q35"), platform("lv", "libvirt")]
    engines = {"direct": engine("qemu", machine="q35"), "lv": engine("libvirt")}
    run = make_run(platforms, engines, SPEC)
    assert tax_pairs(run) == []
    platforms[1]["machine"] = "q35"
    pairs = tax_pairs(make_run(platforms, engines, SPEC))
    assert [(p.qemu, p.libvirt, p.machine) for p in pairs] == [("direct", "lv", "q35")]


def test_tsc_early_khz_of_the_qemu_backend_is_a_note_not_a_difference(tmp_path):
    platforms = [platform("direct", "qemu", machine="microvm"), platform("lv", "libvirt")]
    platforms[1]["machine"] = "microvm"
    engines = {
        "direct": engine("qemu", machine="microvm", cmdline=CMDLINE + " tsc_early_khz=2445000"),
        "lv": engine("libvirt"),
    }
    tax = libvirt_tax(frames_of([make_run(platforms, engines, SPEC)], tmp_path))
    assert tax is not None
    assert len(tax.notes) == 1 and "tsc_early_khz=2445000" in tax.notes[0]
    assert "tsc_early_khz=2445000" in tax_markdown(tax)


def test_failed_instances_and_refused_steps_are_left_out(tmp_path):
    run = make_run(PLATFORMS, ENGINES, SPEC)
    # A libvirt instance that never became ready, with an absurd ready_s, and a
    # refused step: neither may move the medians.
    bad = dict(run.samples[1], ok=False, ready_s=99.0, index=1)
    run.samples.append(bad)
    run.steps.append(dict(run.steps[1], step=99, status="refused", teardown_s=50.0))
    tax = libvirt_tax(frames_of([run], tmp_path))
    assert row(tax.table, 1, "ready_s").libvirt == pytest.approx(4.5)
    assert tax.notes == [
        "N=1: 1 of 4 `lv` instances never became ready (no reason recorded); "
        "left out of the medians."
    ]
    assert row(tax.table, 1, "teardown_per_instance_s").libvirt == pytest.approx(1.0)


def test_two_runs_give_a_table_each(tmp_path):
    a = make_run(PLATFORMS, ENGINES, SPEC, run_id="libvirt-tax-20261130-000000-aaaa")
    b = make_run(PLATFORMS, ENGINES, SPEC, run_id="libvirt-tax-20261130-000001-bbbb")
    tax = libvirt_tax(frames_of([a, b], tmp_path))
    assert sorted(tax.table["run"].unique()) == [a.run_id, b.run_id]
    assert tax_markdown(tax).count("#### The libvirt tax") == 2


def test_the_report_shows_the_tax_only_for_runs_that_have_a_pair(tmp_path):
    from bench.report import REPORT_HTML, TAX_MD, build_report

    frames_of([make_run(PLATFORMS, ENGINES, SPEC)], tmp_path)
    run_dir = tmp_path / "libvirt-tax-20261130-000000-aaaa"
    report = build_report([run_dir], out=tmp_path / "report")
    md = (tmp_path / "report" / TAX_MD).read_text()
    assert md.startswith("# What libvirt adds, measured") and "+0.40 s" in md
    html = (tmp_path / "report" / REPORT_HTML).read_text()
    assert "<h2>What libvirt adds, measured</h2>" in html and "+0.40 s" in html
    assert tmp_path / "report" / TAX_MD in report.files

    # A run with only one of the two backends: no tax file, and none left from before.
    solo = make_run(PLATFORMS[:1], {"direct": ENGINES["direct"]}, SPEC[::2], run_id="solo-1")
    frames_of([solo], tmp_path)
    build_report([tmp_path / "solo-1"], out=tmp_path / "report")
    assert not (tmp_path / "report" / TAX_MD).exists()
    assert "What libvirt adds" not in (tmp_path / "report" / REPORT_HTML).read_text()
