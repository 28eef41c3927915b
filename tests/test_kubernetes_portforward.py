"""Port-forward through the FAKE API server's websocket port-forward (tests/k8s_fake_apiserver.py),
bridged to real servers: an HTTP server on loopback, and the real PostgreSQL test container."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from chaoskit.errors import TargetError
from chaoskit.k8s_portforward import PortForwardSpec, port_forward, rewrite_dsn, rewrite_url

pytest_plugins = ("kubernetes_helpers",)  # the fake-API fixtures
NS = "ledger"


@pytest.fixture()
def http_server():
    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            body = f"hello from {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_http_probe_path_through_a_port_forward(fake, backend, http_server) -> None:
    pods = sorted(n for (ns, n) in fake.pods if ns == NS and n.startswith("ledger-api-"))
    for p in pods:
        fake.forward_port(NS, p, 8080, ("127.0.0.1", http_server))
    with port_forward(backend, {"service": "ledger-api", "port": 8080}) as pf:
        url = rewrite_url("http://ledger-api:8080/health?x=1", pf.local_port)
        assert url == f"http://127.0.0.1:{pf.local_port}/health?x=1"
        for _ in range(2):  # one stream per connection
            r = httpx.get(url, timeout=10, headers={"Connection": "close"})
            assert r.status_code == 200 and r.text == "hello from /health?x=1"
        assert pf.pod_used == [pods[0], pods[0]]  # stable choice: first ready pod by name
    streams = [r for r in fake.requests if r.path.endswith("/portforward")]
    assert len(streams) == 2 and all(r.query["ports"] == ["8080"] for r in streams)
    assert all(r.path == f"/api/v1/namespaces/{NS}/pods/{pods[0]}/portforward" for r in streams)


def test_sql_through_a_port_forward_to_real_postgres(fake, backend, postgres) -> None:
    host = urlsplit(postgres).hostname
    fake.forward_port(NS, "postgres-0", 5432, (host, 5432))
    with port_forward(backend, PortForwardSpec(owner="postgres", port=5432)) as pf:
        dsn = rewrite_dsn("postgresql://postgres@postgres:5432/postgres", pf.local_port)
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            assert conn.execute("select 40 + 2").fetchone() == (42,)
            addr = conn.execute("select inet_server_addr()::text").fetchone()[0]
        assert addr.split("/")[0] == host  # really reached the container, via the stream


def test_port_forward_errors_are_clear(fake, backend) -> None:
    with pytest.raises(TargetError, match="no ready pod"):
        with port_forward(backend, {"service": "ghost", "port": 80}):
            pass
    with pytest.raises(TargetError, match="no pod 'nope'"):
        with port_forward(backend, {"pod": "nope", "port": 80}):
            pass
    with pytest.raises(ValueError, match="needs pod, service"):
        PortForwardSpec.model_validate({"port": 80})
    # nothing listens behind the pod's port: the local connection just closes, error recorded
    with port_forward(backend, {"service": "broker", "port": 8090}) as pf:
        s = socket.create_connection(("127.0.0.1", pf.local_port), timeout=5)
        s.settimeout(5)
        assert s.recv(10) == b""
        s.close()
    assert any("nothing listens" in e for e in pf.errors)


def test_rewrites() -> None:
    assert rewrite_url("http://u:p@api:8080/x", 9) == "http://u:p@127.0.0.1:9/x"
    assert rewrite_dsn("postgresql://ledger:pw@postgres:5432/ledger?sslmode=disable", 7) == (
        "postgresql://ledger:pw@127.0.0.1:7/ledger?sslmode=disable"
    )
    assert rewrite_dsn("host=postgres port=5432 dbname=ledger", 7) == "host=127.0.0.1 port=7 dbname=ledger"
    assert rewrite_dsn("dbname=ledger", 7) == "dbname=ledger host=127.0.0.1 port=7"


def test_forwarded_for_probes(fake, ctx, http_server, postgres) -> None:
    from chaoskit.k8s_portforward import forwarded
    from chaoskit.runner.context import RunContext

    for p in [n for (ns, n) in fake.pods if ns == NS and n.startswith("broker-")]:
        fake.forward_port(NS, p, 8090, ("127.0.0.1", http_server))
    with forwarded(ctx, {"service": "broker", "port": 8090}, "http://broker:8090/health") as url:
        assert httpx.get(url, timeout=10).text == "hello from /health"
    fake.forward_port(NS, "postgres-0", 5432, (urlsplit(postgres).hostname, 5432))
    with forwarded(ctx, {"pod": "postgres-0", "port": 5432}, "host=postgres port=5432 user=postgres dbname=postgres") as dsn:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    with pytest.raises(TargetError, match="needs a kubernetes target"):
        with forwarded(RunContext(run_id="x", seed=1), {"pod": "p", "port": 1}, "http://x"):
            pass


def test_http_and_sql_probes_with_port_forward(fake, ctx, http_server, postgres) -> None:
    """`port_forward:` on the http and sql probes, through the fake API's port-forward."""
    from chaoskit.probes.http import HttpProbe
    from chaoskit.probes.sql import SqlProbe

    for p in [n for (ns, n) in fake.pods if ns == NS and n.startswith("broker-")]:
        fake.forward_port(NS, p, 8090, ("127.0.0.1", http_server))
    probe = HttpProbe(HttpProbe.Params(url="http://broker:8090/health", port_forward={"service": "broker", "port": 8090}), ctx)
    value = probe.read()
    assert value["status"] == 200 and value["body"] == "hello from /health"
    fake.forward_port(NS, "postgres-0", 5432, (urlsplit(postgres).hostname, 5432))
    sql = SqlProbe(SqlProbe.Params(dsn="postgresql://postgres@postgres:5432/postgres", query="select 41 + 1",
                                   port_forward={"pod": "postgres-0", "port": 5432}), ctx)
    assert sql.read() == 42 and sql.read() == 42
    with pytest.raises(Exception, match="port"):
        HttpProbe.Params(url="http://x", port_forward={"service": "broker"})  # no port: a clear error
