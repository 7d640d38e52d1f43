"""The dashboard's widgets: the sidebar cards (run, AIS upload, prune, ops) and the main area
(status, dataset, live log and the gallery / map / chip index / schedule / ops DB tabs).

:class:`DashboardLayout` is mixed into :class:`~dashboards.app.DashboardApp`: it creates the
widgets as attributes of the session's app and wires them to the app's handlers
(:class:`~dashboards.handlers.DashboardHandlers`) and redraws.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import panel as pn

from dashboards import downloads, gallery, plots, status, views
from dashboards.controls import AIS_HELP
from dashboards.upload import REFUSAL_SINK_CLASS, AisUploader

W = pn.widgets


def md_pane(text: str = "", css: str | None = None, **kw: Any) -> pn.pane.Markdown:
    """A Markdown pane in the dashboard's style (``css``: an extra CSS class)."""
    return pn.pane.Markdown(text, margin=(0, 10), stylesheets=[status.CSS],
                            css_classes=[css] if css else [], **kw)


class DashboardLayout:
    """Builds one session's widgets (see the module docstring)."""

    # ------------------------------------------------------------------ sidebar
    def _run_card(self) -> pn.Card:
        s = self.settings
        self.w_mode = W.RadioButtonGroup.from_param(s.param.mode, label="Mode", color="primary")
        self.w_ais = W.RadioBoxGroup.from_param(s.param.ais_source, label="AIS source")
        self.w_ais_help = md_pane(AIS_HELP[s.ais_source])
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
        self.run_msg = md_pane(css="s2xr-run-msg")
        pn.bind(self._on_settings, s.param.mode, s.param.ais_source, s.param.gate_enabled,
                s.param.bind_chips_to_ships, watch=True)
        self._on_settings(s.mode, s.ais_source, s.gate_enabled, s.bind_chips_to_ships)
        # Start and Stop first: visible without scrolling on a laptop's 1280×720
        return pn.Card(
            self.w_mode, pn.Row(self.b_start, self.b_stop), self.run_msg,
            md_pane("**AIS source**"), self.w_ais, self.w_ais_help, self.w_swir,
            self.w_max_ships, self.w_bind, self.w_max_chips, self.w_restrict, self.w_interval,
            stac, gate, title="Run", sizing_mode="stretch_width")

    def _upload_card(self) -> pn.Card:
        self.w_upload = AisUploader(max_mb=self.max_upload_mb, css_classes=["s2xr-upload"],
                                    sizing_mode="stretch_width", layout="compact")
        self.w_upload.param.watch(self._on_upload, "uploaded")
        self.w_upload.param.watch(self._on_upload_refused, "refused")
        # the browser's refusal of an oversize file (written by FILEPOND_LABELS_JS)
        self.w_upload_refused = W.TextInput(value="", visible=False,
                                            css_classes=[REFUSAL_SINK_CLASS])
        self.w_upload_refused.param.watch(self._on_browser_refusal, "value")
        self.upload_msg = md_pane(f"CSV or Excel, at most {self.max_upload_mb:g} MB (larger "
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
        self.prune_msg = md_pane(css="s2xr-prune-msg")
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
        self.ops_msg = md_pane(css="s2xr-ops-msg")
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
        self.status_md = md_pane()
        self.progress = pn.indicators.Progress(value=0, max=1, bar_color="primary",
                                               sizing_mode="stretch_width", height=18)
        status_card = pn.Card(self.status_badge, self.stages, self.progress, self.status_md,
                              title="Status", collapsible=False, sizing_mode="stretch_width",
                              css_classes=["s2xr-status"])
        self.world_md = md_pane()
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
        tabs = [("Gallery", self._gallery_tab()), ("Map", self._map_tab()),
                ("Chip index", self._table_tab()), ("Schedule", self._schedule_tab()),
                ("Ops DB", self._ops_tab())]
        self._tab_names = [name for name, _ in tabs]
        self.tabs = pn.Tabs(*tabs, sizing_mode="stretch_width", css_classes=["s2xr-tabs"])
        self.tabs.param.watch(self._on_tab_shown, "active")
        return [top, self.tabs]

    def _on_tab_shown(self, event: Any) -> None:
        """Tabulator cannot lay out rows while its tab is hidden: rows that arrived then (a
        run finished in the background) stay undrawn. Send them again once it is shown. The
        map is drawn only while its tab shows (it is the page's costliest model)."""
        if self._tab_names[event.new] == "Chip index":
            self.table.value = self.table.value.copy()
        elif self._tab_names[event.new] == "Map" and self._map_stale:
            self._apply_map()

    def _gallery_tab(self) -> pn.viewable.Viewable:
        self.gallery = gallery.QuicklookGallery(sizing_mode="stretch_width",
                                                css_classes=["s2xr-gallery"])
        self.gallery.param.watch(lambda e: setattr(self, "selected_chip", e.new), "selected")
        self.w_gallery_n = W.Select(label="Show", options={"newest 24": 24, "newest 48": 48,
                                                           "newest 96": 96}, value=48, width=120)
        self.w_gallery_n.param.watch(lambda _e: self._apply_gallery(), "value")
        self.detail = pn.Column(md_pane("*Click a quicklook (or a table row) for the chip's "
                                    "detail.*"), sizing_mode="stretch_width",
                                css_classes=["s2xr-detail"])
        self.param.watch(self._on_select, "selected_chip")
        self.param.watch(lambda _e: self._outline_selected(), "selected_chip")
        return pn.Row(pn.Column(self.w_gallery_n, self.gallery, sizing_mode="stretch_width"),
                      pn.Column(self.detail, width=430), sizing_mode="stretch_width")

    def _map_tab(self) -> pn.viewable.Viewable:
        self.w_basemap = W.Select.from_param(self.param.basemap, options=self._basemaps,
                                             label="Basemap tiles (need internet)", width=260)
        self.map_pane = pn.pane.Bokeh(None, sizing_mode="stretch_width", height=540,
                                      css_classes=["s2xr-map"])
        self.param.watch(lambda _e: self._apply_map(rebuild=True), "basemap")
        self.map_empty = md_pane(
            "**No chips yet.** The map shows the tile outline and, once a run has cut "
            "chips, their footprints over a low-resolution image of the newest scene. Start "
            "a run from the sidebar (or `s2xr run` / `s2xr chip`).", css="s2xr-empty")
        return pn.Column(self.w_basemap, self.map_empty, self.map_pane,
                         sizing_mode="stretch_width")

    def _table_tab(self) -> pn.viewable.Viewable:
        # columns as wide as their data; the table scrolls sideways when they do not fit
        self.table = W.Tabulator(views.table_frame(self._index),
                                 header_filters=dict(views.HEADER_FILTERS),
                                 pagination="remote", page_size=15, show_index=False,
                                 disabled=True, selectable=1, sizing_mode="stretch_width",
                                 layout="fit_data_table", widths={"qa_reason": 240},
                                 formatters={"mmsi": {"type": "plaintext"}},
                                 css_classes=["s2xr-table"])
        self.table.on_click(self._on_table_click)
        self.w_pass = W.RadioButtonGroup(label="QA", options=["all", "passed", "rejected"],
                                         value="all")
        self.table.add_filter(pn.bind(self._qa_filter, self.w_pass))
        self.download_buttons = downloads.download_buttons(
            self.stores.root, lambda: self.table.current_view)
        return pn.Column(pn.Row(md_pane("**QA**"), self.w_pass),
                         pn.FlexBox(md_pane("**Download**"), *self.download_buttons,
                                    css_classes=["s2xr-downloads"]),
                         self.table, sizing_mode="stretch_width")

    def _schedule_tab(self) -> pn.viewable.Viewable:
        self.schedule_pane = pn.pane.Bokeh(plots.schedule_plot(views.schedule_frame(
            views.load_schedule(Path("/nonexistent")), None)), sizing_mode="stretch_width")
        self.schedule_table = pn.pane.DataFrame(pd.DataFrame(), index=False, max_rows=30,
                                                sizing_mode="stretch_width")
        self.schedule_empty = md_pane(
            "**No overpass schedule yet.** A run predicts the tiles' Sentinel-2 overpasses "
            "first and shows their capture windows here (or run `s2xr predict-overpasses`).",
            css="s2xr-empty")
        return pn.Column(self.schedule_empty, self.schedule_pane, self.schedule_table,
                         sizing_mode="stretch_width")

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
