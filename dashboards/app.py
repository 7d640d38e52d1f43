"""The s2xr dashboard: ``panel serve dashboards/app.py [--args --config FILE]`` or
``s2xr dashboard``.

:class:`DashboardApp` is one browser session's view (a ``pn.viewable.Viewer`` over
``param`` settings). Every session talks to the same process-wide
:class:`~dashboards.state.JobManager` (:func:`~dashboards.state.get_manager`), which owns the
background job and its :class:`~pipelines.run_job.RunControl`; a periodic callback polls its
status and log tail, and reloads the store views when the files under ``storage.root``
change (also when a CLI run writes them). The dashboard never calls STAC or AIS itself: runs
go through :func:`pipelines.run_job.run_batch` / ``run_continuous``.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # served as a script: make the repository importable
    _repo = str(Path(__file__).resolve().parent.parent)
    if _repo not in sys.path:
        sys.path.insert(0, _repo)

import holoviews as hv
import pandas as pd
import panel as pn
import param

from dashboards import gallery, plots, status, views
from dashboards.actions import (
    DEFAULT_MAX_UPLOAD_MB,
    UploadCheck,
    build_embedded_world,
    chip_upload,
    prune,
    qa_report,
    refusal_text,
    retry_due,
    save_upload,
)
from dashboards.controls import (
    AIS_HELP,
    AIS_SYNTHETIC,
    CONTINUOUS,
    OBS_UPLOAD,
    OpsSettings,
    PruneSettings,
    RunSettings,
)
from dashboards.state import JobBusyError, JobManager, get_manager
from dashboards.upload import (
    REFUSAL_SINK_CLASS,
    AisUploader,
    filepond_labels_callback,
    oversize_message,
    parse_refusal,
)
from pipelines.run_job import uses_embedded_world
from s2xr.config import with_overrides
from s2xr.errors import S2xrError

log = logging.getLogger(__name__)

BASEMAP_ENV = "S2XR_DASHBOARD_BASEMAP"
MAX_UPLOAD_ENV = "S2XR_DASHBOARD_MAX_UPLOAD_MB"
BASEMAP_CHOICES = ("OpenStreetMap.Mapnik", "Esri.WorldImagery")
NO_BASEMAP = "none (offline)"
POLL_MS = 700
RELOAD_MIN_S = 2.0
W = pn.widgets


def _md(text: str = "", css: str | None = None, **kw: Any) -> pn.pane.Markdown:
    return pn.pane.Markdown(text, margin=(0, 10), stylesheets=[status.CSS],
                            css_classes=[css] if css else [], **kw)


class DashboardApp(pn.viewable.Viewer):
    """One session's dashboard over the shared :class:`JobManager`."""

    selected_chip = param.String(default="", doc="chip shown in the detail view")
    basemap = param.String(default=NO_BASEMAP)

    def __init__(self, manager: JobManager, **params: Any) -> None:
        super().__init__(**params)
        self.manager = manager
        self.cfg = manager.base_config
        self.stores = views.Stores.of(self.cfg)
        self.embedded = uses_embedded_world(self.cfg)
        self.settings = RunSettings.from_config(self.cfg)
        self.prune_settings = PruneSettings()
        self.ops_settings = OpsSettings()
        self.max_upload_mb = float(os.environ.get(MAX_UPLOAD_ENV, DEFAULT_MAX_UPLOAD_MB))
        configured = os.environ.get(BASEMAP_ENV) or ""
        self._basemaps = [NO_BASEMAP, *([configured] if configured else []),
                          *[b for b in BASEMAP_CHOICES if b != configured]]
        self.basemap = configured or NO_BASEMAP
        self._upload: UploadCheck | None = None
        self._sig: tuple[float, ...] | None = None
        self._last_reload = 0.0
        self._reloading = False
        self._log_seq = -1
        self._version = -1
        self._index = views.load_index(self.stores.root)
        self._gallery_all: list[dict[str, str]] = []
        self._world: dict[str, Any] | None = None
        self._thumbs = pn.state.as_cached("s2xr-dashboard-thumbnails", gallery.ThumbnailCache)
        self.sidebar = [self._run_card(), self._upload_card(), self._prune_card(),
                        self._ops_card()]
        self.main = self._main()
        self._reload_now()
        self._update_status()
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.add_periodic_callback(self._tick, period=POLL_MS)

    # ------------------------------------------------------------------ sidebar
    def _run_card(self) -> pn.Card:
        s = self.settings
        self.w_mode = W.RadioButtonGroup.from_param(s.param.mode, label="Mode", color="primary")
        self.w_ais = W.RadioBoxGroup.from_param(s.param.ais_source, label="AIS source")
        self.w_ais_help = _md(AIS_HELP[s.ais_source])
        self.w_swir = W.Checkbox.from_param(s.param.include_swir, label="Include SWIR (B11/B12)")
        self.w_max_ships = W.IntInput.from_param(s.param.max_ships, label="Max ships (0 = all)")
        self.w_bind = W.Checkbox.from_param(s.param.bind_chips_to_ships,
                                            label="Bind chips to ships 1:1")
        self.w_max_chips = W.IntInput.from_param(s.param.max_chips, label="Max chips (0 = all)")
        self.w_restrict = W.Checkbox.from_param(s.param.restrict_to_schedule,
                                                label="Restrict to schedule")
        self.w_interval = W.FloatInput.from_param(s.param.interval_min,
                                                  label="Loop interval (min)")
        stac = pn.Card(
            W.FloatSlider.from_param(s.param.stac_max_cloud, label="STAC max cloud (%)", step=1),
            W.FloatInput.from_param(s.param.stac_window_hours, label="STAC window (± hours)"),
            title="STAC search", collapsed=True, sizing_mode="stretch_width")
        self.w_gate_on = W.Checkbox.from_param(s.param.gate_enabled, label="Gate on")
        self.gate_inputs = [
            W.FloatInput.from_param(s.param.gate_max_cloud, label="max cloud (0–1)", step=0.01),
            W.FloatInput.from_param(s.param.gate_max_land, label="max land (0–1)", step=0.01),
            W.FloatInput.from_param(s.param.gate_min_water, label="min water (0–1)", step=0.01),
            W.FloatInput.from_param(s.param.gate_ndwi_threshold, label="NDWI threshold",
                                    step=0.01),
            W.FloatInput.from_param(s.param.gate_min_valid, label="min valid (0–1)", step=0.01)]
        gate = pn.Card(self.w_gate_on, *self.gate_inputs, title="Quality gate", collapsed=True,
                       sizing_mode="stretch_width")
        self.b_start = W.Button(label="▶ Start", color="success")
        self.b_stop = W.Button(label="■ Stop", color="danger", disabled=True)
        self.b_start.on_click(self._on_start)
        self.b_stop.on_click(self._on_stop)
        self.run_msg = _md(css="s2xr-run-msg")
        pn.bind(self._on_settings, s.param.mode, s.param.ais_source, s.param.gate_enabled,
                s.param.bind_chips_to_ships, watch=True)
        self._on_settings(s.mode, s.ais_source, s.gate_enabled, s.bind_chips_to_ships)
        return pn.Card(
            self.w_mode, _md("**AIS source**"), self.w_ais, self.w_ais_help, self.w_swir,
            self.w_max_ships, self.w_bind, self.w_max_chips, self.w_restrict, self.w_interval,
            stac, gate, pn.Row(self.b_start, self.b_stop), self.run_msg, title="Run",
            sizing_mode="stretch_width")

    def _upload_card(self) -> pn.Card:
        self.w_upload = AisUploader(max_mb=self.max_upload_mb, css_classes=["s2xr-upload"],
                                    sizing_mode="stretch_width", layout="compact")
        self.w_upload.param.watch(self._on_upload, "uploaded")
        self.w_upload.param.watch(self._on_upload_refused, "refused")
        # the browser's refusal of an oversize file (written by FILEPOND_LABELS_JS)
        self.w_upload_refused = W.TextInput(value="", visible=False,
                                            css_classes=[REFUSAL_SINK_CLASS])
        self.w_upload_refused.param.watch(self._on_browser_refusal, "value")
        self.upload_msg = _md(f"CSV or Excel, at most {self.max_upload_mb:g} MB (larger "
                              "files: `s2xr chip --ais FILE`); validated like any AIS file.",
                              css="s2xr-upload-msg")
        self.b_chip_upload = W.Button(label="Chip this file", color="primary", disabled=True)
        self.b_chip_upload.on_click(self._on_chip_upload)
        return pn.Card(self.w_upload, self.upload_msg, self.b_chip_upload,
                       self.w_upload_refused, title="Chip from an AIS file",
                       sizing_mode="stretch_width")

    def _prune_card(self) -> pn.Card:
        ps = self.prune_settings
        self.b_preview = W.Button(label="Preview (dry run)", color="primary")
        self.b_prune = W.Button(label="Prune", color="danger", disabled=True)
        self.b_preview.on_click(self._on_prune_preview)
        self.b_prune.on_click(self._on_prune)
        share = f"{self.cfg.ops.prune_max_share * 100:.3g} %"
        self.w_force = W.Checkbox(label=f"Force: remove more than {share} of the chips",
                                  value=False, visible=False,
                                  css_classes=["s2xr-prune-force"])
        self.w_force.param.watch(self._on_force, "value")
        self.prune_msg = _md(css="s2xr-prune-msg")
        self.prune_table = pn.pane.DataFrame(pd.DataFrame(), index=False, max_rows=10,
                                             sizing_mode="stretch_width", visible=False)
        return pn.Card(
            W.FloatInput.from_param(ps.param.time_tol_min, label="Time tolerance (min)"),
            W.FloatInput.from_param(ps.param.dist_tol_m, label="Distance tolerance (m)"),
            W.Select.from_param(ps.param.observations, label="Check against",
                                css_classes=["s2xr-prune-obs"]),
            pn.Row(self.b_preview, self.b_prune), self.prune_msg, self.w_force,
            self.prune_table, title="Prune by AIS", collapsed=True,
            sizing_mode="stretch_width")

    def _ops_card(self) -> pn.Card:
        self.b_retry = W.Button(label="Retry due jobs", color="primary")
        self.b_qa = W.Button(label="Write QA report", color="primary")
        self.b_retry.on_click(self._on_retry)
        self.b_qa.on_click(self._on_qa)
        self.ops_msg = _md(css="s2xr-ops-msg")
        self.qa_download = W.FileDownload(label="Download QA report", visible=False,
                                          color="light")
        return pn.Card(
            W.IntInput.from_param(self.ops_settings.param.retry_limit, label="Retry limit"),
            pn.Row(self.b_retry, self.b_qa), self.ops_msg, self.qa_download,
            title="Ops", collapsed=True, sizing_mode="stretch_width")

    # ------------------------------------------------------------------ main area
    def _main(self) -> list[Any]:
        css = [status.CSS]
        self.status_badge = pn.pane.HTML("", margin=(5, 10), stylesheets=css)
        self.stages = pn.pane.HTML("", margin=(0, 10), stylesheets=css)
        self.status_md = _md()
        self.progress = pn.indicators.Progress(value=0, max=1, bar_color="primary",
                                               sizing_mode="stretch_width", height=18)
        status_card = pn.Card(self.status_badge, self.stages, self.progress, self.status_md,
                              title="Status", collapsible=False, sizing_mode="stretch_width",
                              css_classes=["s2xr-status"])
        self.world_md = _md()
        self.b_world = W.Button(label="Build the embedded world", color="primary",
                                visible=False)
        self.b_world.on_click(self._on_build_world)
        world_card = pn.Card(self.world_md, self.b_world, title="Dataset", collapsible=False,
                             sizing_mode="stretch_width", css_classes=["s2xr-dataset"])
        self.log_pane = pn.pane.HTML(status.log_html([]), stylesheets=css,
                                     sizing_mode="stretch_width", css_classes=["s2xr-logtail"])
        log_card = pn.Card(self.log_pane, title="Log (live tail)", collapsible=False,
                           sizing_mode="stretch_width")
        top = pn.Row(pn.Column(status_card, world_card, sizing_mode="stretch_width"),
                     log_card, sizing_mode="stretch_width")
        self.tabs = pn.Tabs(("Gallery", self._gallery_tab()), ("Map", self._map_tab()),
                            ("Chip index", self._table_tab()),
                            ("Schedule", self._schedule_tab()), ("Ops DB", self._ops_tab()),
                            sizing_mode="stretch_width", css_classes=["s2xr-tabs"])
        return [top, self.tabs]

    def _gallery_tab(self) -> pn.viewable.Viewable:
        self.gallery = gallery.QuicklookGallery(sizing_mode="stretch_width",
                                                css_classes=["s2xr-gallery"])
        self.gallery.param.watch(lambda e: setattr(self, "selected_chip", e.new), "selected")
        self.w_gallery_n = W.Select(label="Show", options={"newest 24": 24, "newest 48": 48,
                                                           "newest 96": 96}, value=48, width=120)
        self.w_gallery_n.param.watch(lambda _e: self._apply_gallery(), "value")
        self.detail = pn.Column(_md("*Click a quicklook (or a table row) for the chip's "
                                    "detail.*"), sizing_mode="stretch_width",
                                css_classes=["s2xr-detail"])
        self.param.watch(self._on_select, "selected_chip")
        return pn.Row(pn.Column(self.w_gallery_n, self.gallery, sizing_mode="stretch_width"),
                      pn.Column(self.detail, width=430), sizing_mode="stretch_width")

    def _map_tab(self) -> pn.viewable.Viewable:
        self.w_basemap = W.Select.from_param(self.param.basemap, options=self._basemaps,
                                             label="Basemap tiles (need internet)", width=260)
        self.map_pane = pn.pane.HoloViews(None, sizing_mode="stretch_width", height=540,
                                          css_classes=["s2xr-map"])
        self.param.watch(lambda _e: self._apply_map(), "basemap")
        return pn.Column(self.w_basemap, self.map_pane, sizing_mode="stretch_width")

    def _table_tab(self) -> pn.viewable.Viewable:
        self.table = W.Tabulator(views.table_frame(self._index), header_filters=True,
                                 pagination="remote", page_size=15, show_index=False,
                                 disabled=True, selectable=1, sizing_mode="stretch_width",
                                 formatters={"mmsi": {"type": "plaintext"}},
                                 css_classes=["s2xr-table"])
        self.table.on_click(self._on_table_click)
        self.w_pass = W.RadioButtonGroup(label="QA", options=["all", "passed", "rejected"],
                                         value="all")
        self.table.add_filter(pn.bind(self._qa_filter, self.w_pass))
        return pn.Column(pn.Row(_md("**QA**"), self.w_pass), self.table,
                         sizing_mode="stretch_width")

    def _schedule_tab(self) -> pn.viewable.Viewable:
        self.schedule_pane = pn.pane.Bokeh(plots.schedule_plot(views.schedule_frame(
            views.load_schedule(Path("/nonexistent")), None)), sizing_mode="stretch_width")
        self.schedule_table = pn.pane.DataFrame(pd.DataFrame(), index=False, max_rows=30,
                                                sizing_mode="stretch_width")
        return pn.Column(self.schedule_pane, self.schedule_table, sizing_mode="stretch_width")

    def _ops_tab(self) -> pn.viewable.Viewable:
        self.ops_jobs = pn.pane.DataFrame(pd.DataFrame(), index=False, width=260)
        self.ops_windows = pn.pane.DataFrame(pd.DataFrame(), index=False, width=260)
        self.ops_retries = pn.pane.DataFrame(pd.DataFrame(), index=False,
                                             sizing_mode="stretch_width")
        self.ops_runs = pn.pane.DataFrame(pd.DataFrame(), index=False,
                                          sizing_mode="stretch_width")
        return pn.Column(
            pn.Row(pn.Column("### Chip jobs by state", self.ops_jobs),
                   pn.Column("### Capture windows by state", self.ops_windows)),
            "### Next retries", self.ops_retries, "### Last runs", self.ops_runs,
            sizing_mode="stretch_width", css_classes=["s2xr-ops"])

    def template(self) -> pn.template.BaseTemplate:
        """The page: the controls in the sidebar (Bootstrap: no web fonts to fetch, so the
        page loads nothing from outside 127.0.0.1)."""
        return pn.template.BootstrapTemplate(
            title="s2xr — Sentinel-2 + AIS ship chips", sidebar=self.sidebar, main=self.main,
            sidebar_width=370, header_background="#0072b5")

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(pn.Column(*self.sidebar, width=360), pn.Column(*self.main))

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
            self.selected_chip = str(self.table.current_view.iloc[event.row]["chip_id"])
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
        rows = self._index.loc[self._index["chip_id"] == chip_id]
        if rows.empty:
            self.detail[:] = [_md(f"chip `{chip_id}` is not in the index")]
            return
        self.detail[:] = [_md(f"### Chip `{chip_id}`\nloading …")]
        try:
            images = await asyncio.to_thread(gallery.chip_images, self.stores.root, chip_id)
            self.detail[:] = gallery.detail_layout(self.stores.root, chip_id, rows.iloc[0],
                                                   images)
        except Exception as exc:  # a chip pruned meanwhile, a file being rewritten
            log.warning("dashboard: chip %s: %s", chip_id, exc)
            self.detail[:] = [_md(f"### Chip `{chip_id}`\ncannot show it: "
                                  f"{html.escape(str(exc))}")]

    # ------------------------------------------------------------------ polling
    def _update_status(self) -> None:
        st = self.manager.status()
        self.status_badge.object = status.badge_html(st)
        self.stages.object = status.stages_html(st)
        self.status_md.object = status.status_text(st)
        value, mx = status.progress_value(st)
        self.progress.max = mx
        self.progress.value = value
        busy = st["state"] in ("running", "stopping")
        self.b_stop.disabled = not busy
        self.b_start.disabled = busy
        if st["version"] != self._version:
            self._version = st["version"]
            self._apply_results(st)

    def _apply_results(self, st: dict[str, Any]) -> None:
        """Show what finished jobs produced (shared by all sessions)."""
        if st["state"] in ("running", "stopping"):
            return
        kind = st["kind"]
        if kind == "prune" and self.manager.result("prune") is not None:
            done = self.manager.result("prune")
            text = f"removed {len(done)} chip(s) from every store"
            if done.area is not None:
                rel = f"pruned/{done.area.name}"
                text += (f"; moved to `{html.escape(rel)}` (undo: `s2xr prune --undo "
                         f"{html.escape(rel)}`; `s2xr vacuum` empties it after "
                         f"{self.cfg.ops.pruned_retention_days:g} day(s))")
            self.prune_msg.object = text
            self.prune_table.object = done.doomed.head(10)
            self.prune_table.visible = len(done) > 0
            self.b_prune.disabled = True
            self.w_force.visible = False
        elif kind == "prune-preview" and self.manager.result("prune-preview") is not None:
            preview = self.manager.result("prune-preview")
            n = len(preview["doomed"])
            text = (f"dry run: **{n}** chip(s) would be removed "
                    f"(±{preview['time_tol_min']:g} min, {preview['dist_tol_m']:g} m)")
            if preview["refusal"]:
                text += (f"<br><span class='s2xr-error'>a prune would be refused: "
                         f"{html.escape(preview['refusal'])}</span>")
            self.prune_msg.object = text
            self.prune_table.object = preview["doomed"].head(10)
            self.prune_table.visible = n > 0
            self.b_prune.label = f"Prune {n} chip(s)"
            self.w_force.visible = bool(preview["refusal"]) and n > 0
            self.b_prune.disabled = n == 0 or (bool(preview["refusal"]) and
                                               not self.w_force.value)
        elif kind in ("retry", "qa-report") and st["result"]:
            self.ops_msg.object = html.escape(st["result"])
        elif kind == "chip" and st["result"]:
            self.upload_msg.object = f"chip job: {html.escape(st['result'])}"
        qa = self.manager.result("qa-report")
        if qa is not None:
            self.qa_download.file = str(qa["path"])
            self.qa_download.filename = "qa_report.html"
            self.qa_download.visible = True
        if st["error"] and kind in ("prune", "prune-preview"):
            self._say(self.prune_msg, st["error"], error=True)

    def _update_log(self) -> None:
        seq = self.manager.tail.seq
        if seq != self._log_seq:
            self._log_seq = seq
            self.log_pane.object = status.log_html(self.manager.log_lines(200))

    async def _tick(self) -> None:
        self._update_status()
        self._update_log()
        if self._reloading or time.monotonic() - self._last_reload < RELOAD_MIN_S:
            return
        sig = await asyncio.to_thread(self.stores.signature)
        if sig == self._sig:
            return
        self._reloading = True
        try:
            self._apply(await asyncio.to_thread(self._load, sig))
        finally:
            self._reloading = False
            self._last_reload = time.monotonic()

    def _reload_now(self) -> None:
        self._apply(self._load(self.stores.signature()))

    def _load(self, sig: tuple[float, ...]) -> dict[str, Any]:
        """Read the stores (in a worker thread): index, schedule, ops DB, world."""
        index = views.load_index(self.stores.root)
        return {"sig": sig, "index": index,
                "schedule": views.schedule_frame(views.load_schedule(self.stores.schedule),
                                                 views.load_windows(self.stores)),
                "ops": views.ops_tables(self.stores, self.cfg),
                "world": views.world_manifest(self.stores),
                "gallery": gallery.gallery_items(self.stores.root, index, 96, self._thumbs)}

    def _apply(self, data: dict[str, Any]) -> None:
        self._sig = data["sig"]
        self._index = data["index"]
        self._gallery_all = data["gallery"]
        self._world = data["world"]
        self._apply_gallery()
        self.table.value = views.table_frame(self._index)
        self._apply_map()
        sched = data["schedule"]
        self.schedule_pane.object = plots.schedule_plot(sched)
        if len(sched):
            table = sched[[c for c in ("tile_id", "satellite", "start_time_utc",
                                       "end_time_utc", "source", "state") if c in sched]]
            self.schedule_table.object = table.tail(30).assign(**{
                c: pd.to_datetime(table[c], utc=True).dt.strftime("%Y-%m-%d %H:%M:%S")
                for c in ("start_time_utc", "end_time_utc")})
        ops = data["ops"]
        self.ops_jobs.object = ops["jobs"]
        self.ops_windows.object = ops["windows"]
        self.ops_retries.object = ops["retries"]
        self.ops_runs.object = ops["runs"]
        self._apply_world()

    def _apply_gallery(self) -> None:
        self.gallery.items = self._gallery_all[: int(self.w_gallery_n.value)]

    def _apply_map(self) -> None:
        tiles = plots.tile_ids_of(self.cfg, self._index, pd.DataFrame(), self._world)
        window = plots.world_window_geometry(self._world, self.cfg)
        basemap = None if self.basemap == NO_BASEMAP else self.basemap
        try:
            plot = plots.footprints_plot(self._index, tiles, world_window=window,
                                         basemap=basemap)
        except Exception as exc:  # e.g. an unknown basemap name
            log.warning("dashboard: map: %s", exc)
            plot = plots.footprints_plot(self._index, tiles, world_window=window)
        self.map_pane.object = plot

    def _apply_world(self) -> None:
        cfg, idx, world = self.cfg, self._index, self._world
        n_pass = int(idx["qa_pass"].astype(bool).sum()) if len(idx) else 0
        lines = [f"**Dataset root** `{html.escape(str(Path(cfg.storage.root).resolve()))}` · "
                 f"config `{html.escape(self.manager.config_source)}`",
                 f"**Chips** {n_pass} passed / {len(idx)} cut"]
        self.b_world.visible = self.embedded and not world
        if self.embedded and world:
            items = world.get("items", [])
            days = sorted({str(i).split("_")[2] for i in items if str(i).count("_") >= 2})
            lines.append(
                "**Embedded offline world** (<span class='s2xr-synthetic'>synthetic</span>): "
                f"tile {world.get('tile')}, {len(items)} Sentinel-2-like item(s) "
                f"({', '.join(days)}), {cfg.demo.n_ships} ships; each run serves it with a "
                "STAC API and an AIS replay server on 127.0.0.1.")
        elif self.embedded:
            lines.append("**Embedded offline world**: not built yet. Build it now (seconds), "
                         "or start a run, which builds it first.")
        else:
            stac = html.escape(str(cfg.stac.api_url or cfg.stac.catalog))
            lines.append(f"**Real services**: STAC `{stac}`, AIS `{html.escape(cfg.ais.url)}`")
        self.world_md.object = "\n\n".join(lines)


def create_app(config_path: str | Path | None = None) -> pn.template.BaseTemplate:
    """The served page for one session."""
    doc = pn.state.curdoc
    if doc is not None and doc.session_context is not None:  # the upload's refusal labels
        doc.js_on_event("document_ready", filepond_labels_callback())
    return DashboardApp(get_manager(config_path)).template()


if pn.state.served:  # `panel serve dashboards/app.py` / `s2xr dashboard`
    pn.extension("tabulator", "filedropper")
    hv.extension("bokeh", logo=False)
    create_app().servable(title="s2xr dashboard")
