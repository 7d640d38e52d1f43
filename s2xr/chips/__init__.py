"""Chips: plan pixel windows for ships (pure NumPy), then cut them from a stack on Dask."""

from s2xr.chips.cut import cut_chips, plan_geometry, stack_grid
from s2xr.chips.ids import chip_id
from s2xr.chips.plan import ChipPlan, plan_chips

__all__ = ["ChipPlan", "chip_id", "cut_chips", "plan_chips", "plan_geometry", "stack_grid"]
