"""What the dashboard's buttons, uploads and selections do: start/stop runs, check and chip
an uploaded AIS file, preview and run a prune, retry due jobs, write the QA report, build the
embedded world, show a chip's detail.

:class:`DashboardHandlers` is mixed into :class:`~dashboards.app.DashboardApp`; long work runs
as a job of the shared :class:`~dashboards.state.JobManager`, never in the session's thread.
"""

from __future__ import annotations

import asyncio
import html
import logging
from typing import Any

import pandas as pd
import panel as pn
import param

from dashboards import gallery
from dashboards.actions import (
    UploadCheck,
    build_embedded_world,
    chip_upload,
    prune,
    qa_report,
    refusal_text,
    retry_due,
    save_upload,
)
from dashboards.controls import AIS_HELP, AIS_SYNTHETIC, CONTINUOUS, OBS_UPLOAD
from dashboards.layout import md_pane
from dashboards.state import JobBusyError
from dashboards.upload import oversize_message, parse_refusal
from s2xr.config import with_overrides
from s2xr.errors import S2xrError

log = logging.getLogger(__name__)


class DashboardHandlers:
    """The session's event handlers (see the module docstring)."""

    # ------------------------------------------------------------------ settings
    def _on_settings(self, mode: str, ais: str, gate_on: bool, bind: bool) -> None:
        continuous = mode == CONTINUOUS
        if ais == AIS_SYNTHETIC and (continuous or not self.embedded):
            self.settings.ais_source = ais = next(
                o for o in self.settings.param.ais_source.objects if o != AIS_SYNTHETIC)
        self.w_ais.disabled = continuous or not self.embedded  # synthetic: Batch, embedded
        self.w_ais_help.object = AIS_HELP[ais]
        self.w_ais_help.css_classes = ["s2xr-synthetic"] if ais == AIS_SYNTHETIC else []
        self.w_interval.disabled = not continuous
        for w in self.gate_inputs:
            w.disabled = not gate_on
        self.w_max_chips.disabled = bind

    # ------------------------------------------------------------------ actions
    @staticmethod
    def _say(pane: pn.pane.Markdown, text: str, error: bool = False) -> None:
        pane.object = f"<span class='s2xr-error'>{html.escape(text)}</span>" if error \
            else text
        if error:
            log.warning("dashboard: %s", text)

    def _start_job(self, pane: pn.pane.Markdown, kind: str, desc: str, fn: Any,
                   summarize: Any = None) -> bool:
        try:
            self.manager.start(kind, desc, fn, summarize=summarize)
        except (JobBusyError, S2xrError) as exc:
            self._say(pane, str(exc), error=True)
            return False
        self._say(pane, f"started: {desc}")
        self._update_status()
        return True

    def _on_start(self, _event: Any = None) -> None:
        s = self.settings
        try:
            s.check(self.cfg)
            cfg = s.config(self.cfg)
            self.manager.start_run(cfg, s.options(), continuous=s.continuous,
                                   interval_min=float(s.interval_min))
        except (JobBusyError, S2xrError) as exc:
            self._say(self.run_msg, str(exc), error=True)
            return
        log.info("dashboard: started %s", s.describe())
        self._say(self.run_msg, f"started: {s.mode.lower()} run")
        self._update_status()

    def _on_stop(self, _event: Any = None) -> None:
        if self.manager.stop():
            self._say(self.run_msg, "stop requested: the job stops after its current step")
        self._update_status()

    async def _on_upload(self, event: param.parameterized.Event) -> None:
        if not event.new:
            return
        name, data = event.new
        self.upload_msg.object = f"checking {html.escape(name)} …"
        self.b_chip_upload.disabled = True
        check = await asyncio.to_thread(save_upload, self.stores.root, name, data,
                                        max_mb=self.max_upload_mb)
        self._show_upload(check)

    def _on_upload_refused(self, event: param.parameterized.Event) -> None:
        """A file over the limit reached the server (the browser refuses it first): its
        chunks are dropped and the session goes on."""
        if not event.new:
            return
        name, n_bytes = event.new
        self._show_upload(UploadCheck(path=None, filename=str(name), n_bytes=int(n_bytes),
                                      error=oversize_message(int(n_bytes), self.max_upload_mb,
                                                             at_least=True)))

    def _on_browser_refusal(self, event: param.parameterized.Event) -> None:
        """The browser refused a file over the limit before sending it."""
        refused = parse_refusal(event.new)
        if refused is None:
            return
        name, n_bytes = refused
        self._show_upload(UploadCheck(path=None, filename=name, n_bytes=n_bytes,
                                      error=oversize_message(n_bytes, self.max_upload_mb)))

    def _show_upload(self, check: UploadCheck) -> None:
        self._upload = check
        text = html.escape(check.summary())
        if check.reasons:
            text += "<br>Rejected rows: " + "; ".join(
                f"{html.escape(k)} ({v})" for k, v in check.reasons.items())
        self.upload_msg.object = text if check.ok else f"<span class='s2xr-error'>{text}</span>"
        self.b_chip_upload.disabled = not check.ok

    def _on_chip_upload(self, _event: Any = None) -> None:
        check = self._upload
        if check is None or not check.ok or check.path is None:
            self._say(self.upload_msg, "upload a valid AIS file first", error=True)
            return
        cfg = with_overrides(self.settings.config(self.cfg),
                             {"chip": {"include_swir": bool(self.settings.include_swir)}})
        path = check.path
        self._start_job(self.upload_msg, "chip", f"chip job for {path.name}",
                        lambda control: chip_upload(cfg, path, control),
                        summarize=lambda r: f"{r.n_chips} chip(s) cut, {r.n_passed} passed, "
                                            f"{r.n_skipped_existing} already in the dataset, "
                                            f"{r.n_deferred} deferred")

    def _on_prune_preview(self, _event: Any = None) -> None:
        ps = self.prune_settings
        upload = None
        if ps.observations == OBS_UPLOAD:
            if self._upload is None or not self._upload.ok:
                self._say(self.prune_msg, "upload a valid AIS file first (Chip from an AIS "
                                          "file)", error=True)
                return
            upload = self._upload.path
        cfg, tt, dt = self.cfg, float(ps.time_tol_min), float(ps.dist_tol_m)

        def fn(control: Any) -> dict[str, Any]:
            res = prune(cfg, time_tol_min=tt, dist_tol_m=dt, dry_run=True, upload=upload,
                        control=control)
            return {"result": res, "doomed": res.doomed, "refusal": refusal_text(res),
                    "time_tol_min": tt, "dist_tol_m": dt, "upload": upload}

        self.b_prune.disabled = True
        self.w_force.value = False
        self.w_force.visible = False
        self._start_job(self.prune_msg, "prune-preview", f"prune preview (±{tt:g} min, "
                        f"{dt:g} m)", fn,
                        summarize=lambda r: f"{len(r['result'])} chip(s) would be removed")

    def _on_prune(self, _event: Any = None) -> None:
        preview = self.manager.result("prune-preview")
        if not preview:
            self._say(self.prune_msg, "run the dry-run preview first", error=True)
            return
        # the guard: above ops.prune_max_share only with "Force" ticked after the preview
        force = bool(preview["refusal"]) and bool(self.w_force.value)
        if preview["refusal"] and not force:
            self._say(self.prune_msg, preview["refusal"], error=True)
            return
        cfg = self.cfg

        def fn(control: Any) -> Any:
            return prune(cfg, time_tol_min=preview["time_tol_min"],
                         dist_tol_m=preview["dist_tol_m"], dry_run=False,
                         upload=preview["upload"], control=control, force=force)

        self.b_prune.disabled = True
        self.w_force.value = False
        self.w_force.visible = False
        self._start_job(self.prune_msg, "prune", "prune by AIS" + (" (forced)" if force
                                                                   else ""), fn,
                        summarize=lambda r: f"removed {len(r)} chip(s)")

    def _on_force(self, event: param.parameterized.Event) -> None:
        preview = self.manager.result("prune-preview")
        if preview and preview["refusal"] and len(preview["doomed"]):
            self.b_prune.disabled = not event.new

    def _on_retry(self, _event: Any = None) -> None:
        cfg, limit = self.settings.config(self.cfg), int(self.ops_settings.retry_limit)
        self._start_job(self.ops_msg, "retry", f"ops retry (limit {limit})",
                        lambda control: retry_due(cfg, limit, control),
                        summarize=lambda r: r.summary())

    def _on_qa(self, _event: Any = None) -> None:
        cfg = self.cfg
        self._start_job(self.ops_msg, "qa-report", "QA report",
                        lambda control: qa_report(cfg, control),
                        summarize=lambda r: f"QA report: {r['n_passed']}/{r['n_chips']} "
                                            f"passed (failure rate {r['failure_rate']:.1%})")

    def _on_build_world(self, _event: Any = None) -> None:
        cfg = self.cfg
        self._start_job(self.run_msg, "world", "build the embedded world",
                        lambda control: build_embedded_world(cfg, control))

    def _on_table_click(self, event: Any) -> None:
        try:
            # event.row: the row's position in the table's whole frame (not in its filtered
            # view: with a filter on, current_view.iloc named another chip, or none)
            self.selected_chip = str(self.table.value.iloc[event.row]["chip_id"])
        except (IndexError, AttributeError, KeyError):
            return

    @staticmethod
    def _qa_filter(which: str, df: pd.DataFrame) -> pd.DataFrame:
        if which == "all" or "qa_pass" not in df:
            return df
        return df.loc[df["qa_pass"] == (which == "passed")]

    async def _on_select(self, event: param.parameterized.Event) -> None:
        chip_id = event.new
        if not chip_id:
            return
        # one selection: a row clicked in the index highlights its quicklook too
        if self.gallery.selected != chip_id:
            self.gallery.selected = chip_id
        rows = self._index.loc[self._index["chip_id"] == chip_id]
        if rows.empty:
            self.detail[:] = [md_pane(f"chip `{chip_id}` is not in the index")]
            return
        self.detail[:] = [md_pane(f"### Chip `{chip_id}`\nloading …")]
        try:
            images = await asyncio.to_thread(gallery.chip_images, self.stores.root, chip_id)
            self.detail[:] = gallery.detail_layout(self.stores.root, chip_id, rows.iloc[0],
                                                   images)
        except Exception as exc:  # a chip pruned meanwhile, a file being rewritten
            log.warning("dashboard: chip %s: %s", chip_id, exc)
            self.detail[:] = [md_pane(f"### Chip `{chip_id}`\ncannot show it: "
                                  f"{html.escape(str(exc))}")]
