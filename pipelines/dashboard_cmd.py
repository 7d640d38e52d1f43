"""``s2xr dashboard``: serve the Panel dashboard (``panel serve dashboards/app.py``).

Binds to 127.0.0.1 by default. Bound to any other address it requires authentication
(Panel basic auth or OAuth) and refuses to start without it. Runs ``panel serve`` in this
process, so the CLI's logging configuration applies to the jobs started from the browser.
"""

from __future__ import annotations

import ipaddress
import math
import os
import secrets
import sys
from pathlib import Path

import click

from s2xr.errors import ConfigError

LOCAL_ADDRESSES = ("127.0.0.1", "localhost", "::1")
MB = 1_000_000  # upload sizes: decimal MB, as the browser's upload widget counts them
UPLOAD_CHUNK_BYTES = 4 * MB  # the upload widget sends a file in chunks of this size


def websocket_max_message_bytes(chunk_bytes: int = UPLOAD_CHUNK_BYTES) -> int:
    """The websocket message limit ``s2xr dashboard`` sets: one upload chunk (base64 in the
    worst case) plus 1 MB for the rest of a message. Uploads travel in chunks, so it does not
    bound the file size (``--max-upload-mb`` does, checked in the browser before sending)."""
    return math.ceil(chunk_bytes * 4 / 3) + MB
APP_PATH = Path(__file__).resolve().parent.parent / "dashboards" / "app.py"


def is_local(address: str) -> bool:
    """True for loopback addresses (the only ones served without authentication)."""
    if address in LOCAL_ADDRESSES:
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def panel_serve_args(*, config_path: str | None, port: int, address: str,
                     basic_auth: str | None = None, cookie_secret: str | None = None,
                     oauth_provider: str | None = None, oauth_key: str | None = None,
                     oauth_secret: str | None = None,
                     oauth_encryption_key: str | None = None,
                     oauth_redirect_uri: str | None = None,
                     allow_websocket_origin: tuple[str, ...] = (), max_upload_mb: float = 50,
                     show: bool = False) -> list[str]:
    """The ``panel serve`` arguments (without the program name). Raises
    :class:`~s2xr.errors.ConfigError` when a non-loopback address has no authentication or
    the authentication is incomplete."""
    if basic_auth and oauth_provider:
        raise ConfigError("--basic-auth and --oauth-provider: choose one authentication")
    if not is_local(address) and not (basic_auth or oauth_provider):
        raise ConfigError(
            f"--address {address}: the dashboard starts jobs and serves the dataset; bound to "
            "an address other than 127.0.0.1 it requires authentication. Pass --basic-auth "
            "FILE (JSON {user: password}) or --oauth-provider with --oauth-key/--oauth-secret, or "
            "keep --address 127.0.0.1 and use an SSH tunnel")
    env = os.environ
    if oauth_provider and not ((oauth_key or env.get("PANEL_OAUTH_KEY")) and
                               (oauth_secret or env.get("PANEL_OAUTH_SECRET"))):
        raise ConfigError("--oauth-provider needs --oauth-key and --oauth-secret (or "
                          "PANEL_OAUTH_KEY / PANEL_OAUTH_SECRET)")
    looks_like_file = basic_auth and ("/" in basic_auth or Path(basic_auth).suffix in (
        ".txt", ".json", ".csv", ".passwd", ".htpasswd"))
    if looks_like_file and not Path(str(basic_auth)).is_file():
        raise ConfigError(f"--basic-auth {basic_auth}: file not found")
    if not APP_PATH.is_file():
        raise ConfigError(f"dashboard app {APP_PATH} is missing; reinstall s2xr")
    if not max_upload_mb > 0:
        raise ConfigError(f"--max-upload-mb {max_upload_mb:g}: must be more than 0")
    # uploads travel in chunks: the websocket limit is set from the chunk, not the file
    args = ["serve", str(APP_PATH), "--address", address, "--port", str(port),
            "--websocket-max-message-size", str(websocket_max_message_bytes()),
            "--num-procs", "1"]
    origins = list(allow_websocket_origin)
    if is_local(address):
        origins += [f"127.0.0.1:{port}", f"localhost:{port}"]
    for o in dict.fromkeys(origins):
        args += ["--allow-websocket-origin", o]
    # Panel refuses a setting given both as an argument and as its PANEL_* variable
    if (basic_auth or oauth_provider) and (cookie_secret or not env.get("PANEL_COOKIE_SECRET")):
        args.append(_flag("--cookie-secret", cookie_secret or secrets.token_urlsafe(32)))
    if basic_auth:
        args += ["--basic-auth", basic_auth]
    if oauth_provider:
        args += ["--oauth-provider", oauth_provider]
        for flag, value in (("--oauth-key", oauth_key), ("--oauth-secret", oauth_secret),
                            ("--oauth-redirect-uri", oauth_redirect_uri)):
            if value:  # else Panel reads its PANEL_OAUTH_* variable
                args.append(_flag(flag, value))
        if oauth_encryption_key or not env.get("PANEL_OAUTH_ENCRYPTION"):
            args.append(_flag("--oauth-encryption-key", oauth_encryption_key or _fernet_key()))
    if show:
        args.append("--show")
    if config_path:
        args += ["--args", "--config", str(Path(config_path).resolve())]
    return args


def _flag(flag: str, value: str) -> str:
    """``--flag=value`` in one argument: a random secret may begin with ``-`` (urlsafe
    base64), which argparse would take for another option if it stood on its own."""
    return f"{flag}={value}"


def _fernet_key() -> str:
    import base64

    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


@click.command("dashboard")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True),
              default=None, help="YAML config (default: configs/demo.yaml, the embedded "
              "offline world).")
@click.option("--port", type=click.IntRange(0, 65535), default=5006, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Bind address; anything but loopback requires --basic-auth or --oauth-*.")
@click.option("--basic-auth", default=None, envvar="S2XR_DASHBOARD_BASIC_AUTH",
              help="Panel basic auth: a JSON file {\"user\": \"password\", ...} or one "
                   "shared password. Env: S2XR_DASHBOARD_BASIC_AUTH.")
@click.option("--cookie-secret", default=None,
              help="Cookie signing secret (or PANEL_COOKIE_SECRET; default: random per "
                   "start).")
@click.option("--oauth-provider", default=None, help="Panel OAuth provider (github, "
              "google, azure, generic, …).")
@click.option("--oauth-key", default=None, help="Or PANEL_OAUTH_KEY.")
@click.option("--oauth-secret", default=None, help="Or PANEL_OAUTH_SECRET.")
@click.option("--oauth-encryption-key", default=None,
              help="Or PANEL_OAUTH_ENCRYPTION (default: random per start).")
@click.option("--oauth-redirect-uri", default=None)
@click.option("--allow-websocket-origin", multiple=True,
              help="Host[:port] the browser uses to reach a non-local address.")
@click.option("--basemap", default=None, envvar="S2XR_DASHBOARD_BASEMAP",
              help="Map tiles: an xyzservices name (OpenStreetMap.Mapnik) or a {z}/{x}/{y} "
                   "URL template (needs internet; default: none, footprints only).")
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=50.0,
              show_default=True,
              envvar="S2XR_DASHBOARD_MAX_UPLOAD_MB",
              help="Largest AIS file (MB, 10^6 bytes) the upload accepts; checked in the "
                   "browser before sending. Env: S2XR_DASHBOARD_MAX_UPLOAD_MB.")
@click.option("--show", is_flag=True, help="Open a browser.")
def dashboard(config_path: str | None, port: int, address: str, basic_auth: str | None,
              cookie_secret: str | None, oauth_provider: str | None, oauth_key: str | None,
              oauth_secret: str | None, oauth_encryption_key: str | None,
              oauth_redirect_uri: str | None, allow_websocket_origin: tuple[str, ...],
              basemap: str | None, max_upload_mb: float, show: bool) -> None:
    """Serve the dashboard: run and watch jobs, browse chips (http://127.0.0.1:5006/app)."""
    from pipelines.options import require_local
    from s2xr.config import load_config

    # fail here, not in the browser, on a bad config or an object store root
    require_local(load_config(config_path), "dashboard")
    try:
        args = panel_serve_args(
            config_path=config_path, port=port, address=address, basic_auth=basic_auth,
            cookie_secret=cookie_secret, oauth_provider=oauth_provider, oauth_key=oauth_key,
            oauth_secret=oauth_secret, oauth_encryption_key=oauth_encryption_key,
            oauth_redirect_uri=oauth_redirect_uri,
            allow_websocket_origin=allow_websocket_origin, max_upload_mb=max_upload_mb,
            show=show)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if basemap:
        os.environ["S2XR_DASHBOARD_BASEMAP"] = basemap
    os.environ["S2XR_DASHBOARD_MAX_UPLOAD_MB"] = str(max_upload_mb)
    click.echo(f"s2xr dashboard on http://{address}:{port}/app "
               f"({'authenticated' if basic_auth or oauth_provider else 'local only'})",
               err=True)
    from panel.command import main as panel_main

    argv = sys.argv
    sys.argv = ["panel", *args]
    try:
        panel_main()
    finally:
        sys.argv = argv


if __name__ == "__main__":  # python -m pipelines.dashboard_cmd (before the CLI lists it)
    dashboard()
