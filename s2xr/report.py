"""The QA report: one self-contained HTML page about a dataset, plus an optional alert.

``write_qa_report(root)`` → ``{root}/reports/qa_report.html`` with counts, the split table,
the split leakage table (vessels, scenes and tiles shared between splits), QA histograms and
a footprint map (PNG images embedded as data URIs), the rejection reasons and a quicklook
gallery. Every value from the data is HTML-escaped. ``send_alert`` POSTs a JSON summary to a
webhook when the failure rate passes a threshold.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from s2xr.splits import leakage_report
from s2xr.store.index import read_index
from s2xr.store.layout import DatasetLayout, atomic_write_text, chip_stem
from s2xr.store.objects import join, read_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QaSummary:
    n_chips: int
    n_passed: int
    n_rejected: int
    n_skipped: int  # points/items without a chip (rejects.parquet)
    failure_rate: float  # rejected / cut
    reasons: dict[str, int]


def summarize(root: Path) -> QaSummary:
    idx = read_index(root)
    rej_path = DatasetLayout(Path(root)).rejects
    rej = pd.read_parquet(rej_path) if rej_path.exists() else pd.DataFrame(
        columns=["stage", "reason"])
    n = len(idx)
    passed = int(idx["qa_pass"].astype(bool).sum()) if n else 0
    gate_reasons = idx.loc[~idx["qa_pass"].astype(bool), "qa_reason"].astype(str).map(
        lambda r: "; ".join(p.split(" ")[0] for p in r.split("; "))) if n else pd.Series([])
    other = rej.loc[rej["stage"] != "gate"]
    reasons = {f"gate: {k}": int(v) for k, v in gate_reasons.value_counts().items()}
    reasons.update({f"{s}: {r.split(' (')[0]}": int(v) for (s, r), v in
                    other.groupby(["stage", "reason"]).size().items()})
    return QaSummary(n_chips=n, n_passed=passed, n_rejected=n - passed, n_skipped=len(other),
                     failure_rate=(n - passed) / n if n else 0.0, reasons=reasons)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _figures(idx: pd.DataFrame) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    fig, axes = plt.subplots(1, 4, figsize=(13, 2.8))
    for ax, col in zip(axes, ("qa_cloud_frac", "qa_land_frac", "qa_ndwi_water_frac",
                              "valid_frac"), strict=True):
        for ok, color in ((True, "tab:green"), (False, "tab:red")):
            ax.hist(idx.loc[idx["qa_pass"].astype(bool) == ok, col].dropna(), bins=20,
                    range=(0, 1), color=color, alpha=0.6, label="passed" if ok else "rejected")
        ax.set_title(col, fontsize=9)
    axes[0].legend(fontsize=8)
    out["histograms"] = _png(fig)
    fig, ax = plt.subplots(figsize=(6, 5))
    for ok, color in ((True, "tab:green"), (False, "tab:red")):
        sub = idx.loc[idx["qa_pass"].astype(bool) == ok]
        if len(sub):
            sub.boundary.plot(ax=ax, color=color, linewidth=0.6)
    ax.set(xlabel="lon", ylabel="lat", title="chip footprints (green passed, red rejected)")
    out["map"] = _png(fig)
    return out


def write_qa_report(root: str | Path, *, gallery: int = 24,
                    dest: str | Path | None = None,
                    data_root: str | Path | None = None) -> Path:
    """Write the dataset's QA report (self-contained HTML) to ``dest``, by default
    ``{root}/reports/qa_report.html``; returns its path. ``data_root``: where the chip
    quicklooks are, when not under ``root`` (an object store dataset's URL)."""
    root = Path(root)
    data = root if data_root is None else data_root
    idx = read_index(root)
    s = summarize(root)
    e = html.escape
    parts = [f"<h1>s2xr QA report — {e(str(data_root or root.resolve()))}</h1>",
             f"<p>{s.n_chips} chips cut, {s.n_passed} passed, {s.n_rejected} rejected by the "
             f"gate (failure rate {s.failure_rate:.1%}); {s.n_skipped} points or items "
             "without a chip.</p>"]
    if len(idx):
        split = idx.groupby(["split", "qa_pass"]).size().unstack(fill_value=0)
        parts.append("<h2>Splits</h2>" + split.to_html(escape=True))
        leak = leakage_report(idx.loc[idx["qa_pass"].astype(bool)])
        parts.append("<h2>Split leakage</h2><p>Vessels, scenes and tiles with passed chips in "
                     "more than one split (0 for the key the split strategy groups by).</p>" +
                     leak.to_html(escape=True, float_format=lambda v: f"{v:.3f}"))
        figs = _figures(idx)
        parts.append(f'<h2>QA fractions</h2><img src="{figs["histograms"]}" alt="histograms">')
        parts.append(f'<h2>Footprints</h2><img src="{figs["map"]}" alt="footprint map">')
    parts.append("<h2>Why chips were rejected or never cut</h2><table><tr><th>reason</th>"
                 "<th>count</th></tr>" + "".join(
                     f"<tr><td>{e(k)}</td><td>{v}</td></tr>" for k, v in
                     sorted(s.reasons.items(), key=lambda kv: -kv[1])) + "</table>")
    cells = []
    for r in idx.loc[idx["qa_pass"].astype(bool)].head(gallery).itertuples():
        # the quicklook sits beside the chip's files whether or not a GeoTIFF was written
        jpg = chip_stem(Path(), str(r.split), int(r.mmsi), r.scene_datetime,
                        str(r.chip_id)).with_suffix(".jpg")
        raw = read_bytes(join(data, *jpg.parts))
        if raw is not None:
            b64 = base64.b64encode(raw).decode()
            cells.append(f'<figure><img src="data:image/jpeg;base64,{b64}" width="128">'
                         f"<figcaption>{e(str(r.mmsi))} {e(str(r.ship_name or ''))}<br>"
                         f"{e(str(r.scene_id))}</figcaption></figure>")
    parts.append("<h2>Gallery</h2><div style='display:flex;flex-wrap:wrap;gap:6px'>" +
                 "".join(cells) + "</div>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>s2xr QA report</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px}figure{margin:0;font-size:10px}"
            "</style></head><body>" + "\n".join(parts) + "</body></html>")
    path = Path(dest) if dest is not None else DatasetLayout(Path(root)).qa_report
    atomic_write_text(path, page)
    return path


def send_alert(summary: QaSummary, url: str, *, threshold: float, timeout_s: float = 10,
               ) -> bool:
    """POST the summary as JSON to ``url`` when ``failure_rate > threshold``; True if sent.
    A failing webhook is logged, never raised (an alert must not break the job)."""
    if summary.failure_rate <= threshold:
        return False
    import requests

    body = {"text": f"s2xr: failure rate {summary.failure_rate:.1%} > {threshold:.1%}",
            "summary": summary.__dict__}
    try:
        requests.post(url, data=json.dumps(body), timeout=timeout_s,
                      headers={"Content-Type": "application/json"}).raise_for_status()
    except requests.RequestException as exc:
        log.error("alert webhook failed: %s", exc)
        return False
    return True
