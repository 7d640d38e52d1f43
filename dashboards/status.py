"""The status and log-tail views as HTML, from :meth:`JobManager.status` snapshots."""

from __future__ import annotations

import html
import time
from typing import Any

RUN_STAGES = ("world", "predict", "collect", "lag", "chip", "done")

CSS = """
.s2xr-badge { display: inline-block; padding: 2px 10px; border-radius: 10px; color: #fff;
              font-weight: 600; font-size: 14px; }
.s2xr-idle { background: #6c757d; } .s2xr-running { background: #0072b5; }
.s2xr-stopping { background: #e8590c; } .s2xr-done { background: #28a745; }
.s2xr-stopped { background: #ffc107; color: #222; } .s2xr-failed { background: #dc3545; }
.s2xr-stage { display: inline-block; padding: 1px 7px; margin-right: 3px; border-radius: 4px;
              border: 1px solid #ccc; color: #888; font-size: 12px; }
.s2xr-stage-on { border-color: #0072b5; background: #e7f1fa; color: #0072b5;
                 font-weight: 600; }
.s2xr-log { font: 11px/1.35 monospace; white-space: pre-wrap; margin: 0; height: 250px;
            overflow-y: auto; display: flex; flex-direction: column-reverse;
            background: #fafafa; border: 1px solid #eee; padding: 4px; }
.s2xr-synthetic { color: #b35900; font-weight: 700; }
.s2xr-error { color: #dc3545; }
"""


def badge_html(st: dict[str, Any]) -> str:
    """The state badge (idle / running / stopping / done / stopped / failed) and the job."""
    state = st["state"]
    what = html.escape(st["description"] or "no job yet")
    return (f"<span class='s2xr-badge s2xr-{state}' data-state='{state}'>{state}</span> "
            f"<span style='margin-left:8px'>{what}</span>")


def stages_html(st: dict[str, Any]) -> str:
    """The run's stages, the current one highlighted (``data-stage`` names it)."""
    stage = st["stage"]
    chain = [f"<span class='s2xr-stage{' s2xr-stage-on' if s == stage else ''}'>{s}</span>"
             for s in RUN_STAGES]
    if stage not in RUN_STAGES:
        chain.append(f"<span class='s2xr-stage s2xr-stage-on'>{html.escape(stage)}</span>")
    return f"<div data-stage='{html.escape(stage)}'>{''.join(chain)}</div>"


def status_text(st: dict[str, Any]) -> str:
    """One line: job kind, stage and message, progress, elapsed time, result or error."""
    busy = st["state"] in ("running", "stopping")
    parts = [f"**{st['kind'] or 'job'}** · stage **{st['stage']}**" +
             (f": {html.escape(st['message'])}" if st["message"] else "")]
    if st["total"]:
        unit = st.get("unit") or ""
        parts.append(f"{st['done']} / {st['total']}" + (f" {html.escape(unit)}" if unit else ""))
        eta = eta_s(st)
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
    if st["kind"]:
        parts.append(f"{st['elapsed_s']:.0f} s")
    if st["error"]:
        parts.append(f"<span class='s2xr-error'>{html.escape(st['error'])}</span>")
    elif st["result"] and not busy:
        parts.append(html.escape(st["result"]))
    return " · ".join(parts)


def eta_s(st: dict[str, Any], now: float | None = None) -> float | None:
    """Seconds left at the rate of the current count: ``done - since_done`` items since
    ``since`` (a count first reported at 32 of 111 has done 32 before it was timed). None
    until the count has moved, and when nothing is left."""
    done, total, since = int(st.get("done") or 0), int(st.get("total") or 0), st.get("since")
    moved = done - int(st.get("since_done") or 0)
    if not since or moved <= 0 or done >= total or st["state"] not in ("running", "stopping"):
        return None
    now = time.time() if now is None else now
    return (now - float(since)) / moved * (total - done)


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def external_status(ext: dict[str, Any], *, version: int) -> dict[str, Any]:
    """A status (as :meth:`JobManager.status` gives) of a live run this dashboard did not
    start, from its status file (:func:`pipelines.run_status.read_run_status`)."""
    return {"state": "running", "kind": "run",
            "description": f"s2xr run {ext.get('run_id', '')} started outside the dashboard "
                           f"(pid {ext.get('pid')})",
            "stage": ext.get("stage") or "idle", "message": ext.get("message") or "",
            "done": int(ext.get("done") or 0), "total": int(ext.get("total") or 0),
            "unit": ext.get("unit") or "", "since": ext.get("since"),
            "since_done": int(ext.get("since_done") or 0), "error": None,
            "result": None, "elapsed_s": time.time() - float(ext.get("started") or time.time()),
            "version": version}


def progress_value(st: dict[str, Any]) -> tuple[int, int]:
    """(value, max) for a progress bar: -1 (indeterminate) while busy without a total."""
    busy = st["state"] in ("running", "stopping")
    if st["total"]:
        mx = max(int(st["total"]), 1)
        return min(int(st["done"]), mx), mx
    if busy:
        return -1, 1
    return (1, 1) if st["state"] == "done" else (0, 1)


def log_html(lines: list[str]) -> str:
    """The log tail, newest at the bottom, kept scrolled to the end."""
    body = html.escape("\n".join(lines)) or "(no log records yet)"
    return f"<pre class='s2xr-log'><span>{body}</span></pre>"
