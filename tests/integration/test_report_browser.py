"""report.html in a real browser: headless Chromium at 1400 and 400 px wide.

The page must not be wider than the viewport (tables scroll inside their own box or
wrap) and every plot must load (each <img> decoded, naturalWidth > 0). The report is
built from real stored data (tests/data/schema1-quickstart) and from fabricated runs
with several platforms, runs and hosts. Screenshots go to $BENCH_SCREENSHOTS when set
(to look at them), else to the test's tmp directory.

Chromium's headless window is at least 500 px wide, so the page is loaded in an
<iframe srcdoc> of the wanted width: the iframe is the page's viewport, and the
harness page can read its document (same origin) once it has loaded.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.report import build_report
from tests.conftest import require_engine
from tests.test_report import HOST, density_run, quickstart_run, sample, step, write_run

SCHEMA1_RUN = Path(__file__).parent.parent / "data" / "schema1-quickstart"
WIDTHS = (1400, 400)
# Chromium's smallest headless window: narrower viewports are iframes inside it.
MIN_WINDOW = 500

HARNESS = """<!DOCTYPE html><html><head><meta charset="utf-8">
<style>body {{ margin: 0; }} iframe {{ border: 0; display: block; }}</style></head>
<body><pre id="measure"></pre>
<iframe id="page" style="width: {width}px; height: {height}px" srcdoc="{srcdoc}"></iframe>
<script>
const frame = document.getElementById("page");
frame.addEventListener("load", () => {{
  const doc = frame.contentDocument, root = doc.documentElement;
  const imgs = [...doc.images].map(i => ({{
    alt: i.alt, complete: i.complete, naturalWidth: i.naturalWidth,
    right: i.getBoundingClientRect().right,
  }}));
  const wide = [...doc.body.querySelectorAll("*")]
    .filter(e => e.getBoundingClientRect().right > root.clientWidth + 0.5)
    .map(e => e.tagName + (e.className ? "." + e.className : "")).slice(0, 10);
  document.getElementById("measure").textContent = JSON.stringify({{
    scrollWidth: root.scrollWidth, clientWidth: root.clientWidth,
    scrollHeight: root.scrollHeight, imgs: imgs, wide: wide,
  }});
  if ({shot}) document.getElementById("measure").remove();
}});
</script></body></html>
"""


@pytest.fixture(scope="module")
def chromium():
    path = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )
    # In CI a missing browser is a broken set-up (scripts/setup-host.sh installs it).
    require_engine("chromium", path is not None, "no chromium on PATH; apt-get install chromium")
    return path


def _chromium(browser: str, harness: Path, window: tuple[int, int], *args: str) -> str:
    p = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # tests run as root in CI containers
            "--disable-gpu",
            "--hide-scrollbars",
            "--mute-audio",
            "--no-first-run",
            f"--user-data-dir={harness.parent / 'chromium-profile'}",
            f"--window-size={window[0]},{window[1]}",
            "--virtual-time-budget=10000",
            *args,
            harness.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def check_page(browser: str, report_html: Path, width: int, shot: Path) -> dict:
    """Load the page at `width`, assert it fits and every plot loaded; screenshot it."""
    srcdoc = html.escape(report_html.read_text(), quote=True)
    harness = report_html.parent / f"harness-{width}.html"
    harness.write_text(HARNESS.format(width=width, height=1000, srcdoc=srcdoc, shot="false"))
    dom = _chromium(browser, harness, (max(width, MIN_WINDOW), 1000), "--dump-dom")
    m = re.search(r'<pre id="measure">(.*?)</pre>', dom, re.S)
    assert m and m.group(1), f"the harness did not measure the page:\n{dom[:500]}"
    found = json.loads(html.unescape(m.group(1)))
    # The whole page, as tall as it is, for the screenshot (then cut to `width`).
    height = found["scrollHeight"]
    harness.write_text(HARNESS.format(width=width, height=height, srcdoc=srcdoc, shot="true"))
    _chromium(
        browser, harness, (max(width, MIN_WINDOW), height), f"--screenshot={shot}", "--dump-dom"
    )
    from PIL import Image

    with Image.open(shot) as im:
        im.crop((0, 0, width, min(im.size[1], height))).save(shot)
    assert found["clientWidth"] == width, found
    assert found["scrollWidth"] <= width, (
        f"report.html is {found['scrollWidth']} px wide in a {width} px viewport; "
        f"too wide: {found['wide']} (screenshot {shot})"
    )
    pngs = sorted(report_html.parent.glob("*.png"))
    assert len(found["imgs"]) == len(pngs), (found["imgs"], pngs)
    for img in found["imgs"]:
        assert img["complete"] and img["naturalWidth"] > 0, f"plot not decoded: {img}"
        assert img["right"] <= width + 0.5, f"plot wider than the page: {img}"
    return found


def multi_host_run(root: Path) -> Path:
    """One run of a container and a VM on two hosts (`--host lab1 --host lab2`)."""
    samples, steps = [], []
    for host, slow in (("lab1", 1.0), ("lab2", 1.6)):
        for platform, ready, n_list in (("container", 0.2, (1, 4)), ("vm", 5.0, (1, 2))):
            for n in n_list:
                for i in range(n):
                    samples.append(
                        sample(
                            platform,
                            n,
                            ready * slow * (1 + i / 10),
                            host=host,
                            index=i,
                            queued_s=0.01 * i,
                            create_s=0.05 * ready,
                            start_s=0.2 * ready,
                            ready_at_s=ready * slow * (1 + i / 10) + 0.01 * i,
                            guest_uptime_s=0.3 * ready if platform == "vm" else 1234.5,
                            pss_bytes=(6 if platform == "container" else 190) * 2**20,
                        )
                    )
                steps.append(
                    step(
                        platform,
                        n,
                        host=host,
                        status="ran",
                        host_drop_per_instance_bytes=(5 if platform == "container" else 230)
                        * 2**20,
                    )
                )
    meta_hosts = {"lab1": HOST, "lab2": {**HOST, "hostname": "lab2", "cpu_cores": 8}}
    d = write_run(root, "quickstart-20261129-000000-cccc", samples, steps)
    meta = json.loads((d / "metadata.json").read_text())
    meta.update(schema_version=2, hosts=meta_hosts)
    (d / "metadata.json").write_text(json.dumps(meta))
    return d


def _reports(root: Path) -> dict[str, list[Path]]:
    results = root / "results"
    return {
        "schema1": [SCHEMA1_RUN],
        "density": [density_run(results)],
        "two-runs": [
            quickstart_run(results, "quickstart-20261129-000000-aaaa"),
            quickstart_run(results, "quickstart-20261129-010000-dddd"),
        ],
        "multi-host": [multi_host_run(results)],
    }


@pytest.mark.parametrize("width", WIDTHS)
def test_report_fits_the_viewport_and_every_plot_loads(chromium, tmp_path, width):
    shots = Path(os.environ.get("BENCH_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    failures = []
    for name, runs in _reports(tmp_path / str(width)).items():
        report = build_report(runs, tmp_path / str(width) / f"report-{name}")
        shot = shots / f"report-{name}-{width}.png"
        try:
            check_page(chromium, report.directory / "report.html", width, shot)
        except AssertionError as e:
            failures.append(f"{name}: {e}")
        assert shot.stat().st_size > 0
    assert not failures, "\n".join(failures)
