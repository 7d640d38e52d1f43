"""docs/example.ipynb (plan, search, stack, cut, plot) runs top to bottom on the embedded
world."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[1] / "docs" / "example.ipynb"


@pytest.mark.slow
def test_example_notebook_runs(world, tmp_path, monkeypatch):
    monkeypatch.setenv("S2XR_WORLD_DIR", str(world.root))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "commit the notebook without outputs"
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(Path.cwd())}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "synthetic items at http://127.0.0.1:" in text
    assert any("image/png" in o.get("data", {}) for o in outputs), "no chip plot"
