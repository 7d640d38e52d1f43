"""The README's Jupyter example runs as written, imports only ``s2xr``, and plots the chip the
right way up (north at the top)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import matplotlib
import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def jupyter_example() -> str:
    text = README.read_text()
    section = text.split("## In Jupyter", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_example_imports_only_s2xr():
    tree = ast.parse(jupyter_example())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom)}
    assert imported == {"s2xr"}
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)], \
        "use s2xr.<name>, not from-imports of sub-modules"


@pytest.mark.slow
def test_the_example_runs_and_plots_north_up(world, tmp_path, monkeypatch):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (tmp_path / "s2xr-demo").mkdir()
    (tmp_path / "s2xr-demo" / "world").symlink_to(world.root, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    ns: dict[str, object] = {}
    plt.close("all")
    exec(compile(jupyter_example(), "README.md", "exec"), ns)
    chips, k = ns["chips"], ns["k"]
    assert bool(chips.qa_pass.values[k])
    ax = plt.gcf().axes[0]
    im = ax.images[0]
    _, _, bottom, top = im.get_extent()
    row0_y, last_y = (top, bottom) if im.origin == "upper" else (bottom, top)
    assert (row0_y < last_y) == ax.yaxis_inverted(), "the chip's row 0 (north) must be on top"
    shown = np.asarray(im.get_array())
    red = chips.reflectance.isel(chip=k).sel(band="red").values
    assert np.corrcoef(shown[0, :, 0], red[0])[0, 1] > 0.99  # row 0 shown is the chip's row 0
    plt.close("all")
