"""The Toxiproxy HTTP API of the built-in proxy, driven by toxiproxy-python and by raw HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner

from chaoskit.proxy.api import ApiServer
from tests.proxy_helpers import EchoServer, connect, echo_server, median_ms, round_trips

pytestmark = pytest.mark.timeout(60)


@pytest.fixture()
def echo() -> Iterator[EchoServer]:
    with echo_server() as srv:
        yield srv


@pytest.fixture()
def api() -> Iterator[str]:
    server = ApiServer("127.0.0.1", 0).start_in_thread()
    host, port = server.address
    yield f"http://{host}:{port}"
    server.close()


def test_toxiproxy_python_drives_the_builtin_proxy(api: str, echo: EchoServer) -> None:
    from toxiproxy import Toxiproxy
    from toxiproxy.exceptions import NotFound, ProxyExists

    host, port = api.removeprefix("http://").split(":")
    tp = Toxiproxy()
    tp.update_api_consumer(host, int(port))
    assert tp.running()
    assert b"version" in tp.version()

    proxy = tp.create(upstream=f"127.0.0.1:{echo.port}", name="echo")
    assert proxy.enabled is True and proxy.listen.startswith("127.0.0.1:")
    assert set(tp.proxies()) == {"echo"}
    with pytest.raises(ProxyExists):
        tp.create(upstream=f"127.0.0.1:{echo.port}", name="echo")

    c = connect(proxy.listen)
    assert median_ms(round_trips(c, 20)) < 20
    proxy.add_toxic(type="latency", attributes={"latency": 200})
    toxics = proxy.toxics()
    assert set(toxics) == {"latency_downstream"}
    assert toxics["latency_downstream"].attributes == {"latency": 200, "jitter": 0}
    assert 160 <= median_ms(round_trips(c, 5)) <= 260

    proxy.destroy_toxic("latency_downstream")
    assert proxy.toxics() == {}
    assert median_ms(round_trips(c, 10)) < 20

    with proxy.down():
        assert tp.get_proxy("echo").enabled is False
    assert tp.get_proxy("echo").enabled is True

    assert proxy.destroy()
    assert tp.proxies() == {}
    with pytest.raises(NotFound):
        proxy.destroy()  # already gone
    c.close()


def test_populate_and_reset(api: str, echo: EchoServer) -> None:
    from toxiproxy import Toxiproxy

    host, port = api.removeprefix("http://").split(":")
    tp = Toxiproxy()
    tp.update_api_consumer(host, int(port))
    created = tp.populate(
        [
            {"name": "a", "upstream": f"127.0.0.1:{echo.port}", "listen": "127.0.0.1:0"},
            {"name": "b", "upstream": f"127.0.0.1:{echo.port}", "listen": "127.0.0.1:0"},
        ]
    )
    assert {p.name for p in created} == {"a", "b"}
    r = httpx.post(f"{api}/populate", json=[{"name": "c", "upstream": f"127.0.0.1:{echo.port}"}])
    assert r.status_code == 201 and [p["name"] for p in r.json()["proxies"]] == ["c"]
    tp.get_proxy("a").add_toxic(type="timeout", attributes={"timeout": 0})
    tp.get_proxy("b").disable()
    assert tp.reset()
    assert tp.get_proxy("a").toxics() == {}
    assert tp.get_proxy("b").enabled is True
    tp.destroy_all()
    assert tp.proxies() == {}


def test_raw_http_shapes_and_errors(api: str, echo: EchoServer) -> None:
    up = f"127.0.0.1:{echo.port}"
    r = httpx.post(f"{api}/proxies", json={"name": "p", "upstream": up, "listen": "127.0.0.1:0"})
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"name", "listen", "upstream", "enabled", "toxics"}
    assert body["toxics"] == []

    r = httpx.post(
        f"{api}/proxies/p/toxics",
        json={"type": "slicer", "stream": "upstream", "attributes": {"average_size": 10}},
    )
    assert r.status_code == 200
    assert r.json() == {
        "name": "slicer_upstream",
        "type": "slicer",
        "stream": "upstream",
        "toxicity": 1.0,
        "attributes": {"average_size": 10, "size_variation": 0, "delay": 0},
    }
    r = httpx.patch(f"{api}/proxies/p/toxics/slicer_upstream", json={"attributes": {"delay": 5}})
    assert r.json()["attributes"]["delay"] == 5 and r.json()["attributes"]["average_size"] == 10
    assert httpx.get(f"{api}/proxies/p/toxics/slicer_upstream").status_code == 200
    assert httpx.get(f"{api}/proxies/p").json()["toxics"][0]["name"] == "slicer_upstream"
    stats = httpx.get(f"{api}/proxies/p/stats").json()
    assert stats["toxics"]["slicer_upstream"]["type"] == "slicer"

    r = httpx.post(f"{api}/proxies/p/toxics", json={"type": "nope"})
    assert (
        r.status_code == 400
        and r.json()["status"] == 400
        and "invalid toxic type" in r.json()["error"]
    )
    r = httpx.post(f"{api}/proxies", content=b"{not json")
    assert r.status_code == 400 and "bad request body" in r.json()["error"]
    r = httpx.post(f"{api}/proxies", json={"name": "q"})
    assert r.status_code == 400 and "upstream" in r.json()["error"]
    assert httpx.get(f"{api}/proxies/zz").status_code == 404
    assert httpx.delete(f"{api}/proxies/p/toxics/zz").status_code == 404
    assert httpx.put(f"{api}/proxies/p").status_code == 405
    assert httpx.delete(f"{api}/proxies/p/toxics/slicer_upstream").status_code == 204
    assert httpx.delete(f"{api}/proxies/p").status_code == 204
    assert httpx.get(f"{api}/proxies").json() == {}
    assert httpx.get(f"{api}/version").json()["version"].startswith("chaoskit-")


def test_cli_proxy_bad_listen_is_a_clear_error() -> None:
    from chaoskit.cli import main

    res = CliRunner().invoke(main, ["proxy", "--listen", "nonsense"])
    assert res.exit_code == 2
    assert "host:port" in res.output
    assert "Traceback" not in res.output


def test_cli_proxy_serves_the_api_and_stops_on_sigterm(tmp_path, echo: EchoServer) -> None:
    import json
    import signal
    import socket
    import subprocess
    import sys
    import time

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    config = tmp_path / "toxiproxy.json"
    config.write_text(json.dumps([{"name": "echo", "upstream": f"127.0.0.1:{echo.port}"}]))
    p = subprocess.Popen(
        [sys.executable, "-m", "chaoskit", "proxy", "--listen", f"127.0.0.1:{port}",
         "--config", str(config), "--seed", "1"],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/proxies", timeout=1)
                break
            except httpx.HTTPError:
                assert p.poll() is None and time.monotonic() < deadline, "proxy did not start"
                time.sleep(0.1)
        listen = r.json()["echo"]["listen"]
        c = connect(listen)
        assert median_ms(round_trips(c, 5)) < 20
        c.close()
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=10)
    assert p.returncode == 0, err
    assert "proxy echo:" in err and "Traceback" not in err


def test_cli_proxy_bad_config_is_a_clear_error(tmp_path) -> None:
    from chaoskit.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    res = CliRunner().invoke(main, ["proxy", "--listen", "127.0.0.1:0", "--config", str(bad)])
    assert res.exit_code == 2 and "not valid JSON" in res.output
    bad.write_text('[{"name": "x"}]')
    res = CliRunner().invoke(main, ["proxy", "--listen", "127.0.0.1:0", "--config", str(bad)])
    assert res.exit_code == 2 and "upstream" in res.output and "Traceback" not in res.output
