"""``chaoskit proxy``: the built-in TCP fault proxy as a standalone Toxiproxy-compatible server,
for stacks that want a user-space fault path without shipping Toxiproxy itself."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from chaoskit.proxy.toxics import ToxicError


def _fail(message: str) -> None:
    click.echo(f"chaoskit proxy: {message}", err=True)
    sys.exit(2)


@click.command("proxy")
@click.option(
    "--listen", default="127.0.0.1:8474", show_default=True, help="host:port of the HTTP API."
)
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Toxiproxy config file (JSON array of proxies) to create at start.",
)
@click.option("--seed", type=int, default=None, help="Seed for toxicity draws and jitter.")
@click.option("-v", "--verbose", is_flag=True, help="Log every API request.")
def proxy(listen: str, config: Path | None, seed: int | None, verbose: bool) -> None:
    """Run the built-in TCP fault proxy (Toxiproxy API) until interrupted."""
    from chaoskit.proxy.api import ApiServer
    from chaoskit.proxy.server import ProxyServer, split_hostport

    try:
        host, port = split_hostport(listen, "--listen")
    except ToxicError as exc:
        _fail(str(exc))
        return
    proxies = None
    if config is not None:
        try:
            proxies = json.loads(config.read_text())
        except OSError as exc:
            _fail(f"cannot read {config}: {exc.strerror or exc}")
        except ValueError as exc:
            _fail(f"{config} is not valid JSON: {exc}")
    engine = ProxyServer(seed)
    try:
        server = ApiServer(host, port, engine=engine, verbose=verbose)
    except OSError as exc:
        engine.close()
        _fail(f"cannot listen on {listen}: {exc.strerror or exc}")
        return
    if proxies is not None:
        try:
            created = engine.populate(proxies)
        except ToxicError as exc:
            server.close()
            _fail(f"{config}: {exc}")
            return
        for p in created:
            click.echo(f"proxy {p['name']}: {p['listen']} -> {p['upstream']}", err=True)
    stop = threading.Event()

    def on_signal(signo: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    h, p = server.address
    click.echo(f"chaoskit proxy: Toxiproxy API on http://{h}:{p}", err=True)
    server.start_in_thread()
    stop.wait()
    server.close()
