"""The dashboard's settings as ``param`` objects, and how they become a run.

:class:`RunSettings` mirrors the predecessor's sidebar (mode, SWIR, AIS source, limits,
schedule restriction, loop interval, STAC cloud/window, the gate) and turns into the same
:class:`~pipelines.run_job.RunOptions` and :class:`~s2xr.config.Config` that ``s2xr run``
builds from its flags, so a batch started here equals ``s2xr run`` with the same settings.
:class:`PruneSettings` and :class:`OpsSettings` hold the prune tolerances and the retry limit.
"""

from __future__ import annotations

from typing import Any

import param

from pipelines.run_job import RunOptions, uses_embedded_world
from s2xr.config import ChipSpec, Config, GateConfig, StacConfig, with_overrides
from s2xr.errors import InputError

BATCH, CONTINUOUS = "Batch", "Continuous"
AIS_CAPTURE = "Capture (aisstream protocol)"
AIS_SYNTHETIC = "SYNTHETIC AIS (demo, Batch only)"

AIS_HELP = {
    AIS_CAPTURE: "Real capture path: the configured `ais.url` during the schedule windows "
                 "(with the embedded world: its replay server, which streams the world's "
                 "synthetic tracks over the aisstream protocol).",
    AIS_SYNTHETIC: "**SYNTHETIC** — the embedded world's AIS tracks used directly, no "
                   "capture (`s2xr run --dry-run-ais`). Batch mode and the embedded world "
                   "only; never real vessels.",
}


# the parameters' defaults are the config's own (a session starts from the loaded config:
# see RunSettings.from_config)
_GATE, _STAC, _CHIP = GateConfig(), StacConfig(), ChipSpec()


class RunSettings(param.Parameterized):
    """Everything a run from the dashboard can change (defaults from the loaded config)."""

    mode = param.Selector(default=BATCH, objects=[BATCH, CONTINUOUS], doc="one batch or cycles")
    include_swir = param.Boolean(default=_CHIP.include_swir, doc="add B11/B12 (20 m)")
    ais_source = param.Selector(default=AIS_CAPTURE, objects=[AIS_CAPTURE, AIS_SYNTHETIC])
    max_ships = param.Integer(default=0, bounds=(0, None), doc="0 = no limit")
    bind_chips_to_ships = param.Boolean(default=False, doc="one chip per ship")
    max_chips = param.Integer(default=0, bounds=(0, None), doc="0 = no limit")
    restrict_to_schedule = param.Boolean(default=True)
    interval_min = param.Number(default=30.0, bounds=(0.1, 24 * 60), doc="Continuous only")
    stac_max_cloud = param.Number(default=_STAC.max_cloud, bounds=(0, 100))
    stac_window_hours = param.Number(default=_STAC.window_hours, bounds=(0.01, 24 * 30))
    gate_enabled = param.Boolean(default=_GATE.enabled)
    gate_max_cloud = param.Number(default=_GATE.max_cloud, bounds=(0, 1))
    gate_max_land = param.Number(default=_GATE.max_land, bounds=(0, 1))
    gate_min_water = param.Number(default=_GATE.min_water, bounds=(0, 1))
    gate_ndwi_threshold = param.Number(default=_GATE.ndwi_threshold, bounds=(-1, 1))
    gate_min_valid = param.Number(default=_GATE.min_valid, bounds=(0, 1))

    @classmethod
    def from_config(cls, cfg: Config, **overrides: Any) -> RunSettings:
        """Settings that reproduce ``cfg`` as it is."""
        values: dict[str, Any] = {
            "include_swir": cfg.chip.include_swir,
            "stac_max_cloud": cfg.stac.max_cloud, "stac_window_hours": cfg.stac.window_hours,
            "gate_enabled": cfg.gate.enabled, "gate_max_cloud": cfg.gate.max_cloud,
            "gate_max_land": cfg.gate.max_land, "gate_min_water": cfg.gate.min_water,
            "gate_ndwi_threshold": cfg.gate.ndwi_threshold,
            "gate_min_valid": cfg.gate.min_valid}
        values.update(overrides)
        return cls(**values)

    @property
    def continuous(self) -> bool:
        return self.mode == CONTINUOUS

    @property
    def synthetic_ais(self) -> bool:
        return self.ais_source == AIS_SYNTHETIC

    def check(self, cfg: Config) -> None:
        """Raise :class:`InputError` for combinations a run refuses (synthetic AIS outside
        Batch mode or outside the embedded world)."""
        if self.synthetic_ais and self.continuous:
            raise InputError("AIS source: synthetic AIS is only for Batch mode; choose "
                             f"{AIS_CAPTURE!r} for Continuous runs")
        if self.synthetic_ais and not uses_embedded_world(cfg):
            raise InputError("AIS source: synthetic AIS exists only for the embedded world "
                             "(stac.api_url: null); choose the capture")

    def options(self) -> RunOptions:
        """The :class:`RunOptions` of these settings (what ``s2xr run`` flags give)."""
        return RunOptions(max_ships=self.max_ships or None, max_chips=self.max_chips or None,
                          bind_chips_to_ships=self.bind_chips_to_ships,
                          include_swir=self.include_swir,
                          restrict_to_schedule=self.restrict_to_schedule,
                          dry_run_ais=self.synthetic_ais)

    def config(self, base: Config) -> Config:
        """``base`` with the STAC and gate overrides applied (validated like a file)."""
        return with_overrides(base, {
            "stac": {"max_cloud": float(self.stac_max_cloud),
                     "window_hours": float(self.stac_window_hours)},
            "gate": {"enabled": bool(self.gate_enabled),
                     "max_cloud": float(self.gate_max_cloud),
                     "max_land": float(self.gate_max_land),
                     "min_water": float(self.gate_min_water),
                     "ndwi_threshold": float(self.gate_ndwi_threshold),
                     "min_valid": float(self.gate_min_valid)}})

    def describe(self) -> str:
        """One line for the log: what the run will do."""
        o = self.options()
        return (f"{self.mode} run: AIS {'SYNTHETIC' if o.dry_run_ais else 'capture'}, "
                f"max_ships={o.max_ships}, max_chips={o.max_chips}, "
                f"bind={o.bind_chips_to_ships}, swir={o.include_swir}, "
                f"restrict_to_schedule={o.restrict_to_schedule}, "
                f"stac.max_cloud={self.stac_max_cloud:g}, "
                f"stac.window_hours={self.stac_window_hours:g}, gate={self.gate_enabled}")


OBS_DB = "ops DB AIS observations"
OBS_UPLOAD = "last uploaded AIS file"


class PruneSettings(param.Parameterized):
    """Tolerances of prune-by-AIS (``s2xr prune``)."""

    time_tol_min = param.Number(default=10.0, bounds=(0, 24 * 60))
    dist_tol_m = param.Number(default=500.0, bounds=(0, 1e6))
    observations = param.Selector(default=OBS_DB, objects=[OBS_DB, OBS_UPLOAD])


class OpsSettings(param.Parameterized):
    """Ops actions: the retry pass's limit."""

    retry_limit = param.Integer(default=50, bounds=(1, 100_000))
