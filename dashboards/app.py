"""The s2xr dashboard: ``panel serve dashboards/app.py [--args --config FILE]`` or
``s2xr dashboard``.

:class:`DashboardApp` is one browser session's view (a ``pn.viewable.Viewer`` over
``param`` settings). Every session talks to the same process-wide
:class:`~dashboards.state.JobManager` (:func:`~dashboards.state.get_manager`), which owns the
background job and its :class:`~pipelines.run_job.RunControl`; a periodic callback polls its
status and log tail, and reloads the store views when the files under ``storage.root``
change (also when a CLI run writes them). The dashboard never calls STAC or AIS itself: runs
go through :func:`pipelines.run_job.run_batch` / ``run_continuous``.

The widgets are built by :class:`~dashboards.layout.DashboardLayout`, the events handled by
:class:`~dashboards.handlers.DashboardHandlers`; this module holds the session object, its
polling and redraws, and the served page.
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
from dashboards.actions import DEFAULT_MAX_UPLOAD_MB, UploadCheck
from dashboards.controls import OpsSettings, PruneSettings, RunSettings
from dashboards.handlers import DashboardHandlers
from dashboards.layout import DashboardLayout
from dashboards.scene_image import newest_scene, scene_underlay
from dashboards.state import JobManager, get_manager
from dashboards.upload import filepond_labels_callback
from pipelines.run_job import uses_embedded_world
from pipelines.run_status import read_run_status
from s2xr.store.layout import DatasetLayout

log = logging.getLogger(__name__)

BASEMAP_ENV = "S2XR_DASHBOARD_BASEMAP"
MAX_UPLOAD_ENV = "S2XR_DASHBOARD_MAX_UPLOAD_MB"
BASEMAP_CHOICES = ("OpenStreetMap.Mapnik", "Esri.WorldImagery")
NO_BASEMAP = "none (offline)"
POLL_MS = 700
RELOAD_MIN_S = 2.0


class DashboardApp(DashboardLayout, DashboardHandlers, pn.viewable.Viewer):
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
        self._ext: dict[str, Any] | None = None
        # scene images shared by every session: dataset root -> (scene id, its image)
        self._scenes: dict[str, tuple[str, Any]] = pn.state.as_cached(
            "s2xr-dashboard-scenes", dict)
        self._scene: dict[str, Any] | None = None
        self._scene_due = False
        self._map_stale = True
        self._map: plots.MapFigure | None = None
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

    # ------------------------------------------------------------------ polling
    def _external_run(self, st: dict[str, Any]) -> dict[str, Any] | None:
        """A live ``s2xr run`` on this dataset that this dashboard did not start (the CLI,
        cron, systemd: its status file), while the dashboard's own job is not running."""
        if st["state"] in ("running", "stopping"):
            return None
        ext = read_run_status(DatasetLayout.of(self.cfg))
        if ext is None or not ext["live"] or ext.get("pid") == os.getpid():
            return None
        return ext

    def _update_status(self) -> None:
        st = self.manager.status()
        self._ext = self._external_run(st)
        if self._ext is not None:
            st = status.external_status(self._ext, version=st["version"])
        self.status_badge.object = status.badge_html(st)
        self.stages.object = status.stages_html(st)
        self.status_md.object = status.status_text(st)
        value, mx = status.progress_value(st)
        self.progress.max = mx
        self.progress.value = value
        busy = st["state"] in ("running", "stopping")
        self.b_stop.disabled = not busy or self._ext is not None  # not ours to stop
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
                rel = f"{DatasetLayout.PRUNED}/{done.area.name}"
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
            self.qa_download.filename = DatasetLayout.QA_REPORT
            self.qa_download.visible = True
        if st["error"] and kind in ("prune", "prune-preview"):
            self._say(self.prune_msg, st["error"], error=True)

    def _update_log(self) -> None:
        if self._ext is not None:  # the external run's own log tail
            self._log_seq = -1
            self.log_pane.object = status.log_html(list(self._ext.get("log") or []))
            return
        seq = self.manager.tail.seq
        if seq != self._log_seq:
            self._log_seq = seq
            self.log_pane.object = status.log_html(self.manager.log_lines(200))

    async def _tick(self) -> None:
        self._update_status()
        self._update_log()
        if self._scene_due and self._map_shown():  # read when someone looks at the map
            self._scene_due = False
            scene = await asyncio.to_thread(self._scene_of, self._index)
            if scene is not self._scene:
                self._scene = scene
                self._apply_map()
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

    def _map_shown(self) -> bool:
        return self._tab_names[self.tabs.active] == "Map"

    def _scene_of(self, index: pd.DataFrame) -> dict[str, Any] | None:
        """The map's scene image (newest scene), read once per scene and dataset for all
        sessions (loader thread)."""
        row = newest_scene(index)
        if row is None:
            return None
        root, scene_id = str(self.stores.root.resolve()), str(row["scene_id"])
        held = self._scenes.get(root)
        if held is None or held[0] != scene_id:  # one image per dataset: the newest scene's
            held = self._scenes[root] = (scene_id, scene_underlay(self.stores.root, index))
        return held[1]

    def _apply(self, data: dict[str, Any]) -> None:
        self._sig = data["sig"]
        self._index = data["index"]
        self._gallery_all = data["gallery"]
        self._world = data["world"]
        self._scene_due = True  # the map's scene image: read by a tick once the map shows
        self._apply_gallery()
        self.table.value = views.table_frame(self._index)
        for b in self.download_buttons:  # nothing to download before the first chip
            b.disabled = self._index.empty
        self._apply_map()
        sched = data["schedule"]
        self.schedule_pane.object = plots.schedule_plot(sched)
        # an empty plot has no ranges to set (BokehJS warns): the empty state instead
        self.schedule_empty.visible = sched.empty
        self.schedule_pane.visible = not sched.empty
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

    def _apply_map(self, rebuild: bool = False) -> None:
        """Draw the map (only while its tab shows); new data goes into the figure shown
        (its zoom stays) unless ``rebuild`` (another basemap) or its layers changed."""
        self.map_empty.visible = self._index.empty
        if not self._map_shown():  # drawn when its tab is shown (DashboardLayout)
            self._map_stale = True
            return
        self._map_stale = False
        tiles = plots.tile_ids_of(self.cfg, self._index, pd.DataFrame(), self._world)
        window = plots.world_window_geometry(self._world, self.cfg)
        basemap = None if self.basemap == NO_BASEMAP else self.basemap
        common = {"world_window": window, "scene": self._scene}
        try:
            plot = plots.footprints_plot(self._index, tiles, basemap=basemap, **common)
        except Exception as exc:  # e.g. an unknown basemap name
            log.warning("dashboard: map: %s", exc)
            plot = plots.footprints_plot(self._index, tiles, **common)
        # one selection: the selected chip outlined on the map; a marker click selects its
        # chip (the outline is updated in place: the zoom stays)
        new = plots.map_figure(plot, self._index, self.selected_chip)
        if (self._map is not None and not rebuild and
                self.map_pane.object is self._map.figure and plots.refresh_map(self._map, new)):
            return  # new data in the figure shown: the zoom stays
        self._map = new
        if new.markers is not None:
            new.markers.selected.on_change("indices", self._on_map_tap)
        self.map_pane.object = new.figure

    def _on_map_tap(self, _attr: str, _old: list[int], new: list[int]) -> None:
        markers = self._map.markers if self._map is not None else None
        if new and markers is not None and new[0] < len(markers.data["chip_id"]):
            self.selected_chip = str(markers.data["chip_id"][new[0]])

    def _outline_selected(self) -> None:
        if self._map is not None:
            self._map.selected.data = plots.selected_xy(self._index, self.selected_chip)

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
            lines.append(f"**Embedded offline world**: not built yet. Build it now "
                         f"({cfg.demo.n_scenes} scenes of {cfg.demo.window_px}² px: about "
                         f"{15 * cfg.demo.n_scenes * (cfg.demo.window_px / 2048) ** 2:.0f} s "
                         "on 2 cores, counted in the status), or start a run, which builds "
                         "it first.")
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
