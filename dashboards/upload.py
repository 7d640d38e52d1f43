"""The dashboard's AIS upload widget: a chunked :class:`panel.widgets.FileDropper` with the
upload limit checked in the browser, and again on the server.

Why: a plain ``FileInput`` sends the whole file, base64-encoded, as one websocket message; a
file above the server's ``--websocket-max-message-size`` made Tornado close the connection —
the session dropped with no message. The dropper sends the file in chunks of
:data:`~pipelines.dashboard_cmd.UPLOAD_CHUNK_BYTES` (the websocket limit is set from the
chunk, not from the file), its FilePond front end refuses a file above the limit before
sending a byte (``max_file_size``, with the labels set by :data:`FILEPOND_LABELS_JS`), and
:class:`AisUploader` drops the chunks of a file above the limit if a client sends them anyway,
reporting it through :attr:`AisUploader.refused`. Sizes are decimal MB (10⁶ bytes), as
FilePond and most file managers count them.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import panel as pn
import param
from bokeh.models import CustomJS

from pipelines.dashboard_cmd import MB, UPLOAD_CHUNK_BYTES


def oversize_message(n_bytes: int, max_mb: float, *, at_least: bool = False) -> str:
    """``file is X MB; the upload limit is Y MB; use `s2xr chip --ais FILE` …``."""
    size = f"{'more than ' if at_least else ''}{n_bytes / MB:.1f} MB"
    return (f"file is {size}; the upload limit is {max_mb:g} MB; use `s2xr chip --ais FILE` "
            "for large files")


def filepond_size(max_mb: float) -> str:
    """``max_mb`` as a FilePond size string (whole KB: FilePond parses only integers)."""
    return f"{max(1, round(max_mb * 1000))}KB"


class AisUploader(pn.widgets.FileDropper):
    """One AIS file at a time, at most ``max_mb`` MB. Set :attr:`uploaded` to
    ``(filename, bytes)`` when a file has arrived whole, :attr:`refused` to
    ``(filename, at_least_bytes)`` when one is over the limit (its chunks are dropped)."""

    max_mb = param.Number(default=50.0, bounds=(0, None), doc="upload limit (MB, 10⁶ bytes)")
    uploaded = param.Parameter(default=None, doc="(filename, bytes) of the last whole file")
    refused = param.Parameter(default=None, doc="(filename, at least n bytes) of an oversize "
                              "file whose chunks were dropped")

    _rename: ClassVar[dict[str, str | None]] = {
        **pn.widgets.FileDropper._rename, "max_mb": None, "uploaded": None, "refused": None}

    def __init__(self, **params: Any) -> None:
        params.setdefault("chunk_size", UPLOAD_CHUNK_BYTES)
        params.setdefault("multiple", False)
        params.setdefault("previews", [])
        super().__init__(**params)
        self._received: dict[str, int] = {}
        self._dropping: set[str] = set()
        self._sync_limit()
        self.param.watch(lambda _e: self._sync_limit(), "max_mb")

    def _sync_limit(self) -> None:
        self.max_file_size = filepond_size(self.max_mb)

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * MB)

    def _process_event(self, event: Any) -> None:
        data = event.data
        if event.event_name != "upload_event":
            super()._process_event(event)
            return
        name, chunk, total = data["name"], int(data["chunk"]), int(data["total_chunks"])
        got = (0 if chunk == 1 else self._received.get(name, 0)) + len(data["data"] or b"")
        self._received[name] = got
        if chunk == 1:
            self._dropping.discard(name)
        # FilePond sends ceil((size + 1) / chunk_size) chunks: the first says how big it is
        at_least = max(got, (total - 1) * self.chunk_size)
        last = chunk == total
        if name in self._dropping or at_least > self.max_bytes:
            self._file_buffer.pop(name, None)
            if name not in self._dropping:
                self._dropping.add(name)
                self.refused = (name, at_least)
            if last:
                self._received.pop(name, None)
            return
        super()._process_event(event)
        if last:
            self._received.pop(name, None)
            value = self.value.pop(name, b"")
            self.mime_type.pop(name, None)
            self.uploaded = (name, value.encode("utf-8") if isinstance(value, str) else value)


# FilePond's refusal of an oversize file, short enough for the sidebar (the item also shows
# the file's own size), applied to every FilePond on the page once it exists; the refusal
# (filename, bytes) is also written to the hidden text input with the CSS class
# REFUSAL_SINK_CLASS, so the server shows the full message beside the widget.
REFUSAL_SINK_CLASS = "s2xr-upload-refused"
FILEPOND_LABELS_JS = """
const labels = {
  labelMaxFileSizeExceeded: 'Too large',
  labelMaxFileSize: 'upload limit {filesize}',
  labelIdle: 'Drop an AIS file (CSV or Excel) here or '
    + '<span class="filepond--label-action">browse</span>',
};
const sinkOf = () => {
  const docs = (window.Bokeh && window.Bokeh.documents) || [];
  for (const doc of docs) {
    for (const m of doc.all_models) {
      if (Array.isArray(m.css_classes) && m.css_classes.includes('__SINK__')) { return m; }
    }
  }
  return null;
};
const roots = [];
const walk = (node) => {
  node.querySelectorAll('.filepond--root').forEach((el) => roots.push(el));
  node.querySelectorAll('*').forEach((el) => { if (el.shadowRoot) walk(el.shadowRoot); });
};
const apply = (tries) => {
  roots.length = 0;
  walk(document);
  let done = 0;
  for (const el of roots) {
    const pond = window.FilePond && window.FilePond.find(el);
    if (!pond) { continue; }
    done += 1;
    if (el.dataset.s2xrLabels) { continue; }
    pond.setOptions(labels);
    pond.on('addfile', (error, item) => {
      const sink = sinkOf();
      if (error && sink && item) {
        sink.value = JSON.stringify([item.filename, item.fileSize, Date.now()]);
      }
    });
    el.dataset.s2xrLabels = '1';
  }
  if (!done && tries > 0) { setTimeout(() => apply(tries - 1), 250); }
};
apply(120);
""".replace("__SINK__", REFUSAL_SINK_CLASS)


def filepond_labels_callback() -> CustomJS:
    """A ``document_ready`` callback running :data:`FILEPOND_LABELS_JS`."""
    return CustomJS(code=FILEPOND_LABELS_JS)


def parse_refusal(value: str) -> tuple[str, int] | None:
    """``(filename, bytes)`` from the refusal sink's value (None if it is not one)."""
    try:
        name, size, *_ = json.loads(value)
        return str(name), int(size)
    except (ValueError, TypeError):
        return None
