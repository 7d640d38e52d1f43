"""Ship labels per chip from AIS at sensing time: oriented boxes, instance masks, exports.

    ship_states(positioned, points)       heading (TrueHeading, else COG) at sensing time
    label_chips(plan, ships)              one row per (chip, ship in its footprint)
    attach_ship_mask(chips, labels)       lazy ship_mask(chip, y, x) uint8
    export_coco(root) / export_yolo_obb(root)
"""

from s2xr.labels.boxes import LABEL_COLUMNS, SHIP_CLASSES, label_chips, ship_class, ship_states
from s2xr.labels.export import export_coco, export_yolo_obb
from s2xr.labels.mask import attach_ship_mask, rasterize_ship_mask, rasterize_ship_masks

__all__ = ["LABEL_COLUMNS", "SHIP_CLASSES", "attach_ship_mask", "export_coco",
           "export_yolo_obb", "label_chips", "rasterize_ship_mask", "rasterize_ship_masks",
           "ship_class", "ship_states"]
