"""report.html: built from a finished run, read from any workdir path (glob characters too),
self-contained, and drawn by a real browser (headless Chromium) with every chart present."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from small_run import small_run

from mixer.cli import main
from mixer.io import read_json
from mixer.report import _size_buckets, cluster_sizes, funnel_steps, render_html

CHROMIUM = Path(os.environ.get("MIXER_CHROMIUM", "/usr/bin/chromium"))
FIXED_CHARTS = (
    "chart-tokens-target-selected", "chart-repetition", "chart-length", "chart-mix-domains",
    "chart-mix-languages", "chart-domain-before-after", "chart-dedup-clusters",
    "chart-rule-removals", "chart-stage-seconds",
)  # fmt: skip


@pytest.fixture(scope="module")
def wd(tmp_path_factory) -> Path:
    """A finished small run, copied to a path with glob characters, its mix manifest beside the
    mix folder (the current layout), and its report rebuilt there."""
    tmp = tmp_path_factory.mktemp("report")
    built = small_run(tmp)
    wd = tmp / "runs [2026]" / "wd*?"
    shutil.copytree(built, wd)
    inside = wd / "mixes" / "sample" / "manifest.json"
    if inside.exists():
        inside.rename(wd / "mixes" / "sample.manifest.json")
    shutil.rmtree(wd / "report")
    result = CliRunner().invoke(main, ["report", str(wd)])
    assert result.exit_code == 0, result.output
    return wd


def test_report_from_a_workdir_path_with_glob_characters(wd):
    report = read_json(wd / "report" / "report.json")
    assert report["mix_name"] == "sample"
    assert report["documents"] and report["mix"]["sources"]
    assert sum(report["length_histogram_after"].values()) == report["mix"]["total_selected_docs"]
    page = (wd / "report" / "report.html").read_text()
    # one self-contained file: no script, nothing fetched
    assert not re.search(r"<script|<link|<img|src=|url\(|@import", page, re.I)
    for source in report["mix"]["sources"]:
        assert f'id="chart-funnel-{source}"' in page
    for chart in FIXED_CHARTS:
        assert f'id="{chart}"' in page


def test_funnel_steps_account_for_every_document(wd):
    report = read_json(wd / "report" / "report.json")
    for name, s in report["mix"]["sources"].items():
        steps = funnel_steps(report, name)
        # each step starts from what the step before left
        for before, step in zip(steps, steps[1:-1], strict=False):
            assert step["left"] + step.get("removed", 0) == before["left"], (name, step)
        assert steps[-1]["left"] == s["selected_docs"]
        assert steps[-2]["left"] == s["unique_docs"]
        got = report["ingest"]["sources"][name]
        assert steps[0]["left"] == got["ingested"] + got["quarantined"]


def test_cluster_sizes_in_numeric_order():
    stats = {"clusters_by_size": {"1": 50, "10": 3, "11": 1, "122": 1, "14": 2, "2": 9}}
    assert cluster_sizes(stats) == [(1, 50), (2, 9), (10, 3), (11, 1), (14, 2), (122, 1)]
    many = [(s, 1) for s in range(2, 40)]
    labels = [label for label, _ in _size_buckets(many)]
    assert labels == ["2", "3–4", "5–8", "9–16", "17–32", "33–64"]
    page = render_html({"workdir": "w", "dedup": stats})
    order = [int(m) for m in re.findall(r">size (\d+)<", page)]
    assert order == [2, 10, 11, 14, 122]


def _render_in_chromium(html_path: Path, out: Path) -> dict:
    """Open the page in headless Chromium, let a probe script measure it, dump the DOM."""
    probe = """<script>addEventListener('load', () => {
      const r = {scrollWidth: document.documentElement.scrollWidth, innerWidth: innerWidth, charts: {}};
      for (const svg of document.querySelectorAll('svg.chart')) {
        const b = svg.getBoundingClientRect(), bb = svg.getBBox();
        r.charts[svg.id] = {w: b.width, h: b.height, bbx: bb.x, bbw: bb.width, bbh: bb.height,
          vbw: svg.viewBox.baseVal.width,
          marks: svg.querySelectorAll('rect').length};
      }
      const pre = document.createElement('pre'); pre.id = 'probe';
      pre.textContent = JSON.stringify(r); document.body.appendChild(pre);
    });</script>"""
    page = out / "probe.html"
    page.write_text(html_path.read_text().replace("</main>", "</main>" + probe))
    profile = tempfile.mkdtemp(prefix="chromium-", dir=out)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--window-size=1440,900", "--virtual-time-budget=5000"]  # fmt: skip
    dom = subprocess.run(
        [str(CHROMIUM), *flags, "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert m, "the page did not finish loading in Chromium"
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="no Chromium (apt-get install chromium)")
def test_every_chart_renders_in_chromium(wd, tmp_path):
    probe = _render_in_chromium(wd / "report" / "report.html", tmp_path)
    report = read_json(wd / "report" / "report.json")
    expected = [f"chart-funnel-{s}" for s in report["mix"]["sources"]] + list(FIXED_CHARTS)
    assert sorted(probe["charts"]) == sorted(expected)
    for chart_id, c in probe["charts"].items():
        assert c["w"] > 200 and c["h"] > 40, (chart_id, c)  # laid out at a readable size
        assert c["bbw"] > 50 and c["bbh"] > 20 and c["marks"] > 0, (chart_id, c)  # drawn, not empty
        assert c["bbx"] >= -1 and c["bbx"] + c["bbw"] <= c["vbw"] + 1, (
            chart_id,
            c,
        )  # nothing cut off
    # wide tables scroll inside their box: the page never gets wider than the window
    assert probe["scrollWidth"] <= probe["innerWidth"], probe


def _legend(page: str, chart_id: str) -> list[tuple[str, str]]:
    svg = re.search(rf'id="{chart_id}".*?</svg>', page, re.S).group(0)
    return re.findall(r'width="11" height="11" fill="(#\w+)"/><text[^>]*>([^<]+)<', svg)


def test_domain_charts_share_labels_and_colors_and_fold_the_tail():
    labels = [f"domain{i:02d}" for i in range(14)]
    dist = {s: {lb: (14 - i) * (k + 1) for i, lb in enumerate(labels)} for k, s in enumerate("abc")}
    report = {"workdir": "w", "mix_domain_distribution": dist, "mix_domain_documents": dist,
              "domain_distribution": {s: {**d, "untagged": 5} for s, d in dist.items()}}  # fmt: skip
    page = render_html(report)
    mix, before_after = (
        _legend(page, "chart-mix-domains"),
        _legend(page, "chart-domain-before-after"),
    )
    assert mix == before_after
    assert [name for _, name in mix] == labels[:9] + ["other"]  # the 9 largest, then the rest
