"""Chips: plan pixel windows for ships (pure NumPy), then cut them lazily on Dask."""

from s2xr.chips.cut import cut_chips, read_batch, read_window
from s2xr.chips.ids import chip_id
from s2xr.chips.plan import ChipPlan, plan_chips

__all__ = ["ChipPlan", "chip_id", "cut_chips", "plan_chips", "read_batch", "read_window"]
