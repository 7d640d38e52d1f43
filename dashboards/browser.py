"""Drive the served dashboard in a real browser (Playwright + Debian's Chromium).

Used by the browser tests and by ``python -m dashboards.screenshots``:
:class:`DashboardServer` starts ``s2xr dashboard`` on a free port of 127.0.0.1 and stops it;
:func:`chromium` launches the browser (sandbox off, background networking off — nothing
leaves the machine); :class:`DashboardPage` wraps the page with the few actions the tests
need (start/stop, wait for a state, tabs, upload, screenshots).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from s2xr.procs import spawn_child

log = logging.getLogger(__name__)

CHROMIUM = os.environ.get("S2XR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-dev-shm-usage"]
REPO = Path(__file__).resolve().parent.parent
DEEP_TEXT_JS = """(el) => {
  const block = new Set(['DIV', 'P', 'LI', 'TR', 'H1', 'H2', 'H3', 'PRE', 'BR', 'TABLE']);
  const walk = (n) => {
    if (n.nodeType === 3) return n.textContent;
    if (n.nodeType === 1 && ['STYLE', 'SCRIPT'].includes(n.tagName)) return '';
    let t = '';
    if (n.shadowRoot) t += walk(n.shadowRoot);
    for (const c of n.childNodes) t += walk(c);
    if (n.nodeType === 1 && block.has(n.tagName)) t += '\\n';
    return t;
  };
  return walk(el);
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dashboard_command(config_path: Path, port: int, extra: list[str] | None = None
                      ) -> list[str]:
    """``s2xr dashboard --config … --port …`` (through ``python -m pipelines.cli``; the
    command module itself if the CLI does not list it yet)."""
    from pipelines.cli import main

    if "dashboard" in main.commands:
        base = [sys.executable, "-m", "pipelines.cli", "dashboard"]
    else:
        base = [sys.executable, "-m", "pipelines.dashboard_cmd"]
    return [*base, "--config", str(config_path), "--port", str(port), "--address",
            "127.0.0.1", *(extra or [])]


class DashboardServer:
    """``s2xr dashboard`` in a subprocess on 127.0.0.1 (a context manager)."""

    def __init__(self, config_path: Path, *, log_path: Path, port: int | None = None,
                 env: dict[str, str] | None = None, timeout_s: float = 90,
                 extra_args: list[str] | None = None) -> None:
        self.config_path = Path(config_path)
        self.port = port or free_port()
        self.log_path = Path(log_path)
        self.env = env or {}
        self.timeout_s = timeout_s
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/app"

    def __enter__(self) -> DashboardServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = self.log_path.open("wb")
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        # dies with the process that started it, even on SIGKILL (s2xr.procs)
        self.proc = spawn_child(dashboard_command(self.config_path, self.port,
                                                  self.extra_args),
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        out.close()
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dashboard exited ({self.proc.returncode}):\n"
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.__exit__(None, None, None)
        raise RuntimeError(f"dashboard did not answer at {self.url}:\n{self.log_tail()}")

    def __exit__(self, *exc: Any) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # tornado shuts down on Ctrl-C
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@contextlib.contextmanager
def chromium(*, headless: bool = True) -> Iterator[Any]:
    """A Playwright Chromium (Debian's binary) with sandbox and background networking off."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, chromium_sandbox=False,
                                    headless=headless, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


class DashboardPage:
    """One browser page on the dashboard, with the actions the tests and screenshots use."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.console: list[str] = []
        self.external: list[str] = []  # requests that tried to leave 127.0.0.1
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("request", self._on_request)
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def open(self, url: str, timeout_s: float = 60) -> DashboardPage:
        self.page.goto(url, timeout=timeout_s * 1000)
        self.page.locator(".s2xr-badge").wait_for(timeout=timeout_s * 1000)
        return self

    def _on_request(self, request: Any) -> None:
        host = urllib.parse.urlsplit(request.url).hostname
        if request.url.startswith(("http:", "https:", "ws:", "wss:")) and \
                host not in ("127.0.0.1", "localhost"):
            self.external.append(request.url)

    # -- reading
    def state(self) -> str:
        return self.page.locator(".s2xr-badge").get_attribute("data-state") or ""

    def stage(self) -> str:
        return self.page.locator("[data-stage]").first.get_attribute("data-stage") or ""

    def text(self, css: str) -> str:
        """The text of the first element matching ``css``, shadow roots included (Panel
        renders every component in its own shadow DOM, which ``innerText`` skips)."""
        return self.page.locator(css).first.evaluate(DEEP_TEXT_JS)

    def wait_for(self, predicate: Any, *, timeout_s: float = 120, what: str = "",
                 poll_s: float = 0.2) -> Any:
        """Poll ``predicate()`` until it returns something truthy (returned)."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
            except Exception as exc:  # an element being re-rendered
                last = exc
            else:
                if last:
                    return last
            time.sleep(poll_s)
        raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what or predicate}"
                           f" (last: {last!r}; state {self.state()!r}, stage "
                           f"{self.stage()!r})")

    def wait_state(self, *states: str, timeout_s: float = 120) -> str:
        return self.wait_for(lambda: self.state() in states and self.state(),
                             timeout_s=timeout_s, what=f"state in {states}")

    # -- acting
    def button(self, name: str, *, exact: bool = False) -> Any:
        return self.page.get_by_role("button", name=name, exact=exact).first

    def click(self, name: str, *, exact: bool = False) -> None:
        btn = self.button(name, exact=exact)
        self.wait_for(btn.is_enabled, timeout_s=30, what=f"button {name!r} enabled")
        btn.click()

    def tab(self, name: str) -> None:
        self.page.locator(".bk-tab").filter(
            has_text=re.compile(f"^{re.escape(name)}$")).first.click()

    def open_card(self, title: str, inside: str) -> None:
        """Expand a collapsed card by its title unless its button ``inside`` is visible."""
        if not self.button(inside).is_visible():
            self.page.locator(".card-header", has_text=title).first.click()
            self.wait_for(self.button(inside).is_visible, timeout_s=10,
                          what=f"card {title!r} open")

    def upload(self, path: Path) -> None:
        self.page.locator(".s2xr-upload input[type=file]").first.set_input_files(str(path))

    def download(self, name: str, dest: Path, *, timeout_s: float = 120) -> Path:
        """Click the download button ``name``; the file the browser got, saved in ``dest``."""
        with self.page.expect_download(timeout=timeout_s * 1000) as info:
            self.button(name, exact=True).click()
        got = info.value
        dest.mkdir(parents=True, exist_ok=True)
        path = dest / got.suggested_filename
        got.save_as(path)
        return path

    def shot(self, path: Path, *, full_page: bool = False) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def errors(self) -> list[str]:
        """Console errors and page errors."""
        return [m for m in self.console if m.startswith(("error", "pageerror"))]

    def bokeh_models(self, name: str) -> int:
        """How many BokehJS models of class ``name`` (e.g. ``ImageRGBA``) the page holds."""
        return int(self.page.evaluate("""(name) => {
          let n = 0;
          for (const doc of (window.Bokeh?.documents ?? [])) {
            for (const m of doc.all_models) { if (m.constructor.__name__ === name) n++; }
          }
          return n;
        }""", name))

    def bokeh_warnings(self) -> list[str]:
        """BokehJS's console warnings (e.g. a plot with no data: "could not set initial
        ranges")."""
        return [m for m in self.console if m.startswith("warning") and "bokeh" in m.lower()]

    def busiest_marker(self) -> dict[str, Any] | None:
        """The map's marker over the biggest pile of footprints (:func:`dashboards.plots.
        chip_clusters`): ``x``, ``y`` (page px, for the mouse), ``mx``, ``my`` (EPSG:3857),
        ``n`` and its tooltip ``text``; None before the map is drawn."""
        return self.page.evaluate("""() => {
          for (const v of (window.Bokeh?.index?.all_views() ?? [])) {
            const d = v.model?.data_source?.data;
            if (!v.glyph || !d || !('text' in d) || !('n' in d) || !d.n.length) continue;
            const r = v.plot_view.canvas_view.el.getBoundingClientRect();
            if (!v.plot_view.el.isConnected || r.width === 0) continue;  // a replaced map
            let k = 0;
            for (let i = 1; i < d.n.length; i++) if (d.n[i] > d.n[k]) k = i;
            return {x: r.left + v.coordinates.x_scale.compute(d.x[k]),
                    y: r.top + v.coordinates.y_scale.compute(d.y[k]),
                    mx: d.x[k], my: d.y[k], n: d.n[k], text: d.text[k]};
          }
          return null;
        }""")

    def tooltips(self) -> list[str]:
        """The text of each BokehJS tooltip entry shown now (one per hovered glyph)."""
        return list(self.page.evaluate("""() => {
          const out = [];
          const walk = (n) => {
            if (n.nodeType === 1 && n.classList.contains('bk-tooltip-content')) {
              const r = n.getBoundingClientRect();
              if (r.width > 0 && r.height > 0) out.push(n.innerText);
            }
            if (n.shadowRoot) walk(n.shadowRoot);
            for (const c of n.children) walk(c);
          };
          walk(document.body);
          return out;
        }"""))

    def selected_on_map(self) -> list[tuple[float, float]]:
        """The centres (EPSG:3857) of the footprints the map outlines as selected
        (:func:`dashboards.plots.map_figure`)."""
        return [tuple(c) for c in self.page.evaluate("""() => {
          const out = [];
          const flat = (a) => Array.isArray(a) || ArrayBuffer.isView(a)
            ? Array.from(a).flatMap(flat) : [a];
          for (const v of (window.Bokeh?.index?.all_views() ?? [])) {
            const d = v.model?.data_source?.data;
            if (!v.glyph || v.model.data_source.name !== 's2xr-selected-chip') continue;
            if (!v.plot_view.el.isConnected) continue;  // a replaced map
            for (let i = 0; i < d.xs.length; i++) {
              const xs = flat(d.xs[i]).filter(Number.isFinite);
              const ys = flat(d.ys[i]).filter(Number.isFinite);
              out.push([(Math.min(...xs) + Math.max(...xs)) / 2,
                        (Math.min(...ys) + Math.max(...ys)) / 2]);
            }
          }
          return out;
        }""")]
