"""Every shell command of README.md, docs/runbook.md, docs/real-data.md, docs/planning.md and
docs/cluster.md, run as written and checked to exit as the docs say.

What is run: each ```bash / ```sh / ```shell block (as one bash script, `set -e`), the `$`
lines of ```console blocks, the `ExecStart=` of ```ini systemd units (with the unit's
`WorkingDirectory=`, `Environment=` and `EnvironmentFile=`) and the command of each ```crontab
line. Where: in a temporary copy of what a clone has (``configs/`` copied; ``.venv``,
``benchmarks``, ``tests`` linked), with the repo's ``.venv/bin`` first on PATH and a clean
environment; ``/srv/s2xr`` (the runbook's install) is such a directory too.

Only the services change: every URL of a real service — in the commands and in the copied
configs — is swapped for a loopback twin: Earth Search → :class:`EarthSearchTwin` (real
items, synthetic rasters), aisstream.io → the replay server (real aisstream frames, any of
the docs' placeholder keys), CelesTrak → a server of the bundled TLEs in CelesTrak's layout.

Expected exit status: 0, unless the command's comment says ``# exit N``. A ``s2xr … run``
is run under tests/helpers/stop_when_waiting.py, which sends SIGTERM (as ``systemctl stop``
does) once the run waits for its next cycle or for a live pass, and returns the run's status.
Files a command expects from the reader (an AIS table of their own, a pruned area to undo)
are made by :data:`SETUPS`. Commands not run are in :data:`SKIP`, each with its reason.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from s2xr.ais.replay import ReplayServerThread
from s2xr.demo.earth_search import EarthSearchTwin, twin_ais, twin_ships
from s2xr.store import open_chips, read_index
from tests.helpers.earth_search import twin_items

REPO = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "docs/runbook.md", "docs/real-data.md", "docs/planning.md",
        "docs/cluster.md")
SHELL = {"bash", "sh", "shell", "console"}
STOPPER = REPO / "tests" / "helpers" / "stop_when_waiting.py"
KEYS = {"paste-your-key-here", "docs-test-key"}  # docs/real-data.md's placeholder; the unit's
EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"
AISSTREAM = "wss://stream.aisstream.io/v0/stream"
CELESTRAK = "https://celestrak.org"

#: Commands that are not run, and why (reviewed; keep it short). Regex on the command.
SKIP = {
    r"^make demo\b": "its install step runs pip (the network; and from a temporary copy it "
                     "would repoint the shared editable install) whenever pyproject.toml is "
                     "newer than .venv/.installed; the command it then runs, `s2xr demo --out "
                     "s2xr-demo`, runs end to end in "
                     "tests/test_cli.py::test_demo_command_end_to_end",
    r"^make test\b": "runs the whole test suite, this test included",
    r"^\.venv/bin/python benchmarks/\S+\.py(?!.*--quick)":
        "full benchmark runs take minutes each on 2 cores (memory.py cuts 20,000 chips); "
        "tests/test_benchmarks.py runs each with --quick (profile_writes.py needs "
        "pyinstrument, not a dependency)",
}
EXIT = re.compile(r"#.*\bexit (\d+)")
S2XR_RUN = re.compile(r"(^|&&\s*|;\s*)((?:\S*/)?s2xr)(?=\s(?:.*\s)?run\b)")


@dataclass
class Block:
    doc: str
    lang: str
    text: str
    line: int

    @property
    def name(self) -> str:
        return f"{self.doc}:{self.line}"


def doc_blocks(doc: str) -> list[Block]:
    text = (REPO / doc).read_text(encoding="utf-8")
    out = []
    for m in re.finditer(r"^```([\w-]*)[^\n]*\n(.*?)^```", text, re.S | re.M):
        lang = m.group(1)
        if lang in SHELL or lang == "crontab" or (lang == "ini" and "ExecStart=" in m.group(2)):
            out.append(Block(doc, lang, m.group(2), text[:m.start()].count("\n") + 1))
    return out


def commands(block: Block) -> list[str]:
    """The block's commands (continuation lines and heredocs kept with their command)."""
    lines = block.text.splitlines()
    if block.lang == "console":
        lines = [ln[2:] for ln in lines if ln.startswith("$ ")]
    out: list[str] = []
    i = 0
    while i < len(lines):
        cmd = lines[i]
        while cmd.endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd += "\n" + lines[i]
        here = re.search(r"<<-?'?(\w+)'?", cmd)
        if here:
            while i + 1 < len(lines):
                i += 1
                cmd += "\n" + lines[i]
                if lines[i].strip() == here.group(1):
                    break
        if cmd.strip() and not cmd.lstrip().startswith("#"):
            out.append(cmd)
        i += 1
    return out


def skip_reason(cmd: str) -> str | None:
    return next((why for rx, why in SKIP.items() if re.search(rx, cmd.strip())), None)


def script_line(cmd: str) -> str:
    """``cmd`` as run: a `s2xr … run` under the stopper; an expected non-zero status
    checked."""
    run = S2XR_RUN.sub(lambda m: f"{m.group(1)}python {shlex.quote(str(STOPPER))} "
                                 f"{m.group(2)}", cmd.split("\n")[0], count=1)
    cmd = "\n".join([run, *cmd.split("\n")[1:]])
    want = EXIT.search(cmd.split("\n")[0])
    if not want or want.group(1) == "0":
        return cmd
    n = want.group(1)
    return (f"{{ {cmd}\n}} && __rc=0 || __rc=$?; [ \"$__rc\" = {n} ] || "
            f"{{ echo \"expected exit {n}, got $__rc: {cmd[:60]!r}\" >&2; exit 97; }}")


class Env:
    """A clean environment and the twins' URL swaps for one doc."""

    def __init__(self, tmp: Path, swaps: dict[str, str]) -> None:
        self.tmp, self.swaps = tmp, dict(swaps)
        self.vars = {k: v for k, v in os.environ.items()
                     if not k.startswith(("S2XR_", "AISSTREAM_", "PYTEST", "COV_"))}
        self.vars["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{self.vars['PATH']}"
        self.vars["HOME"] = str(tmp / "home")
        (tmp / "home").mkdir(exist_ok=True)

    def swap(self, text: str) -> str:
        for real, twin in self.swaps.items():
            text = text.replace(real, twin)
        return text

    def clone(self, where: Path) -> Path:
        """What a clone of the repo has, for commands that name repo paths."""
        where.mkdir(parents=True, exist_ok=True)
        for name in (".venv", "benchmarks", "tests"):
            (where / name).symlink_to(REPO / name)
        (where / "configs").mkdir()
        for f in (REPO / "configs").glob("*.yaml"):
            (where / "configs" / f.name).write_text(self.swap(f.read_text()))
        return where

    def run(self, script: str, cwd: Path, extra: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        proc = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd,
                                env={**self.vars, **(extra or {})}, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            pytest.fail(f"timed out after {timeout:.0f} s:\n{script}\n{out[-4000:]}")
        return subprocess.CompletedProcess(script, proc.returncode, out, "")


def run_block(env: Env, block: Block, cwd: Path, extra: dict[str, str] | None = None
              ) -> tuple[list[str], list[tuple[str, str]]]:
    """Run ``block`` (shell) in ``cwd``; returns (commands run, commands skipped + why)."""
    ran, skipped, lines = [], [], []
    for cmd in commands(block):
        why = skip_reason(cmd)
        if why:
            skipped.append((cmd.split("\n")[0], why))
            continue
        ran.append(cmd)
        lines.append(script_line(env.swap(cmd)))
    if lines:
        res = env.run("\n".join(lines), cwd, extra)
        print(f"--- {block.name} ---\n{res.stdout[-4000:]}")
        assert res.returncode == 0, f"{block.name}: exit {res.returncode}\n" \
                                    f"{chr(10).join(ran)}\n--- output ---\n{res.stdout[-6000:]}"
    return ran, skipped


def run_systemd(env: Env, block: Block, srv: Path) -> list[str]:
    """The unit's ExecStart, as systemd would start it (and stop it: SIGTERM)."""
    unit = dict(ln.split("=", 1) for ln in env.swap(block.text.replace("/srv/s2xr", str(srv)))
                .splitlines() if "=" in ln and not ln.lstrip().startswith(("#", ";")))
    extra = dict(ln.split("=", 1) for ln in unit["Environment"].split())
    env_file = Path(unit["EnvironmentFile"])
    assert env_file.is_file(), f"EnvironmentFile= {unit['EnvironmentFile']!r} is not a file"
    extra.update(ln.split("=", 1) for ln in env_file.read_text().splitlines()
                 if "=" in ln and not ln.startswith("#"))
    cmd = unit["ExecStart"]
    res = env.run(script_line(cmd), Path(unit["WorkingDirectory"]), extra)
    print(f"--- {block.name} ExecStart ---\n{res.stdout[-4000:]}")
    assert res.returncode == 0 and "stopped cleanly" in res.stdout, res.stdout[-6000:]
    return [cmd]


def run_crontab(env: Env, block: Block, srv: Path) -> list[str]:
    ran = []
    for ln in block.text.splitlines():
        if not ln.strip() or ln.startswith("#"):
            continue
        cmd = ln.split(None, 5)[5]  # after minute hour day month weekday
        res = env.run(script_line(env.swap(cmd.replace("/srv/s2xr", str(srv)))), srv)
        print(f"--- {block.name} {cmd[:40]} ---\n{res.stdout[-4000:]}")
        assert res.returncode == 0, f"{block.name}: {cmd}\n{res.stdout[-6000:]}"
        ran.append(cmd)
    return ran


# --------------------------------------------------------------------------- setups
def my_ais(env: Env, cwd: Path, twin: EarthSearchTwin) -> dict[str, str]:
    """docs/real-data.md's `my_ais.csv`: an AIS table of the reader's own — here ships on
    the twin's sentinel-2-c1-l2a scenes (the config's collection) at their sensing times."""
    c1 = [it for it in twin.items if it["collection"] == "sentinel-2-c1-l2a"]
    twin_ais(twin_ships(c1)).to_csv(cwd / "my_ais.csv", index=False)
    return {}


def pruned_area(env: Env, cwd: Path, twin: EarthSearchTwin) -> dict[str, str]:
    """docs/runbook.md's undo-by-hand block: $ROOT, a dataset with chips, and the area a
    prune left, named as in the block (pruned/20261130T194551)."""
    my_ais(env, cwd, twin)
    far = pd.read_csv(cwd / "my_ais.csv").assign(lat=lambda d: d.lat - 1.0)
    far.to_csv(cwd / "far.csv", index=False)
    setup = env.run("s2xr chip --config configs/earth-search.yaml --ais my_ais.csv --out ds\n"
                    "s2xr prune --config configs/earth-search.yaml --out ds --ais far.csv "
                    "--force\nmv ds/pruned/2* ds/pruned/20261130T194551", cwd)
    assert setup.returncode == 0, setup.stdout[-4000:]
    pruned = pd.read_parquet(cwd / "ds/pruned/20261130T194551/index_rows.parquet")
    assert len(pruned) > 0 and not len(read_index(cwd / "ds"))  # every chip pruned
    return {"ROOT": str(cwd / "ds"), "_chips": ",".join(sorted(pruned.chip_id))}


#: per doc: what the reader is expected to bring (made before the doc's first block)
SETUPS = {"docs/real-data.md": my_ais, "docs/runbook.md": pruned_area}


# --------------------------------------------------------------------------- twins
class TleServer:
    """CelesTrak's gp.php on 127.0.0.1: the bundled TLEs as FORMAT=tle gives them (names
    padded to 24 columns, CRLF)."""

    def __init__(self) -> None:
        lines = (REPO / "s2xr" / "data" / "tle" / "sentinel2.tle").read_text().splitlines()
        body = "\r\n".join(ln.ljust(24) if i % 3 == 0 else ln for i, ln in enumerate(lines))
        data = (body + "\r\n").encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ok = self.path.startswith("/NORAD/elements/gp.php")
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data) if ok else 0))
                self.end_headers()
                if ok:
                    self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> TleServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    frames = [ln for ln in (REPO / "tests/data/ais/messages.jsonl").read_text().splitlines()
              if ln.strip()]
    root = tmp_path_factory.mktemp("twins")
    with EarthSearchTwin(twin_items(), root / "es") as es, \
            ReplayServerThread(frames, speed=None, valid_keys=KEYS) as ais, TleServer() as tle:
        yield es, {EARTH_SEARCH: es.url, AISSTREAM: ais.url, CELESTRAK: tle.url}, ais


def test_every_doc_has_shell_blocks_and_the_skip_list_is_used():
    used = set()
    for doc in DOCS:
        blocks = doc_blocks(doc)
        assert blocks, doc
        for b in blocks:
            for cmd in commands(b):
                used |= {rx for rx in SKIP if re.search(rx, cmd.strip())}
    assert used == set(SKIP), f"stale SKIP entries: {set(SKIP) - used}"


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS)
def test_doc_commands_run_as_written(doc, twins, tmp_path):
    es, swaps, ais = twins
    env = Env(tmp_path, swaps)
    work = env.clone(tmp_path / "work")
    srv = env.clone(tmp_path / "srv" / "s2xr")
    (srv / ".env").write_text("AISSTREAM_API_KEY=docs-test-key\n")
    facts = SETUPS[doc](env, work, es) if doc in SETUPS else {}
    extra = {k: v for k, v in facts.items() if not k.startswith("_")}  # the rest: env
    ran, skipped = [], []
    for block in doc_blocks(doc):
        if block.lang == "ini":
            ran += run_systemd(env, block, srv)
        elif block.lang == "crontab":
            ran += run_crontab(env, block, srv)
        else:
            r, s = run_block(env, block, work, extra)
            ran, skipped = ran + r, skipped + s
    print(f"{doc}: ran {len(ran)} command(s), skipped {len(skipped)}")
    for cmd, why in skipped:
        print(f"  skipped {cmd!r}: {why}")
    CHECKS.get(doc, lambda *_: None)(work, srv, facts, ais)


# --------------------------------------------------------------------------- what ran
def check_real_data(work: Path, srv: Path, extra: dict, ais: ReplayServerThread) -> None:
    idx = read_index(work / "s2xr-data")  # section 8: chips of the reader's AIS
    assert len(idx) > 0 and idx.qa_pass.any() and (idx.collection == "sentinel-2-c1-l2a").all()
    assert list((work / "ais-check" / "ais").glob("*/*"))  # section 5: the short capture
    assert (work / "sentinel2.tle").read_text().count("SENTINEL-2") == 3  # section 4


def check_runbook(work: Path, srv: Path, extra: dict, ais: ReplayServerThread) -> None:

    assert (srv / "logs" / "s2xr.log").stat().st_size > 0
    assert (srv / "s2xr-data" / "plan" / "overpass_schedule.csv").exists()
    root = Path(extra["ROOT"])  # the undo by hand put the pruned chips back, in every store
    back = read_index(root)
    assert ",".join(sorted(back.chip_id)) == extra["_chips"]
    assert set(open_chips(root).chip_id.values) == set(back.loc[back.qa_pass, "chip_id"])
    assert {p.stem for p in (root / "chips").rglob("*.tif")} == set(back.chip_id)
    assert not (root / "pruned" / "20261130T194551").exists()


def check_planning(work: Path, srv: Path, extra: dict, ais: ReplayServerThread) -> None:
    assert (work / "plan" / "windows.png").stat().st_size > 0
    assert (work / "s2xr-demo" / "plan" / "overpass_schedule.csv").exists()


def check_cluster(work: Path, srv: Path, extra: dict, ais: ReplayServerThread) -> None:
    # the block checked index == files == cube in the bucket itself (its python step);
    # here: the workspace the client committed from, on this disk, and that the workers —
    # not the client — wrote the chips
    ws = work.parent / "home" / ".cache" / "s2xr" / "workspaces" / "s3" / "ships" / "demo"
    idx = read_index(ws)
    assert idx.qa_pass.any()
    assert not (ws / "chips").exists() and not (ws / "chips.zarr").exists()
    assert "Start worker" in (work / "workers.log").read_text()
    assert "PUT /ships/demo/chips/" in (work / "s3.log").read_text()


CHECKS = {"docs/real-data.md": check_real_data, "docs/runbook.md": check_runbook,
          "docs/planning.md": check_planning, "docs/cluster.md": check_cluster}

if __name__ == "__main__":  # pragma: no cover - list what would run
    for d in DOCS:
        for b in doc_blocks(d):
            for c in commands(b):
                print(f"{b.name} [{b.lang}] {'SKIP ' if skip_reason(c) else ''}{c!r}")
    sys.exit(0)
