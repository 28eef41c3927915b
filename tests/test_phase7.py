"""The Phase 7 gauntlet against the reference ledger stack: the 12 scenarios pass (quick
variant), and scenarios fail — naming the violated invariant — against deliberately broken
ledger-api builds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LEDGER = ROOT / "compose" / "ledger"
PHASE7 = ROOT / "experiments" / "phase7"
PORTS = {"LEDGER_API_PORT": "38080", "BROKER_PORT": "38090", "LEDGER_PG_PORT": "35432"}


def ledger_env(project: str) -> dict[str, str]:
    return {
        "LEDGER_PROJECT": project,
        "LEDGER_API": f"http://127.0.0.1:{PORTS['LEDGER_API_PORT']}",
        "LEDGER_BROKER": f"http://127.0.0.1:{PORTS['BROKER_PORT']}",
        "LEDGER_DSN": f"postgresql://ledger:ledger@127.0.0.1:{PORTS['LEDGER_PG_PORT']}/ledger",
        "LEDGER_ADMIN_DSN": f"postgresql://postgres@127.0.0.1:{PORTS['LEDGER_PG_PORT']}/ledger",
    }


@pytest.fixture()
def fresh_ledger(docker_client, base_image) -> Iterator:
    """A function to (re)create the stack with given ledger-api env; torn down at the end."""
    from chaoskit import stack

    project = f"ckp7{uuid.uuid4().hex[:6]}"
    state = {"up": False}

    def make(**app_env: str) -> dict[str, str]:
        if state["up"]:
            stack.down(project, LEDGER)
        stack.up(LEDGER, project=project, env={**PORTS, **app_env}, timeout=180)
        state["up"] = True
        return ledger_env(project)

    yield make
    if state["up"]:
        stack.down(project, LEDGER)


def chaoskit(*args: str, env: dict[str, str], timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chaoskit", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **env})


def test_the_12_scenarios_pass_quick_variant(tmp_path, fresh_ledger):
    env = fresh_ledger()
    junit = tmp_path / "phase7.xml"
    r = chaoskit("suite", str(PHASE7), "--var", "duration=10s", "--junit", str(junit),
                 "--reports-dir", str(tmp_path), "--output", "json", env=env)
    data = json.loads(r.stdout)
    failed = [(c["title"], c["reasons"]) for c in data["cases"] if c["exit_code"] != 0]
    assert r.returncode == 0 and not failed, failed
    assert len(data["cases"]) == 12
    for c in data["cases"]:
        j = json.loads(Path(c["journal"]).read_text())
        verify = [s for s in j["steps"] if s["phase"] == "verify"]
        assert verify and verify[0]["result"]["ok"], c["title"]
        assert j["faults"], f"{c['title']}: no fault was applied"
        assert j["workload"]["counts"]["ok"] > 0, f"{c['title']}: no acknowledged operation"


BUGS = [
    # (LEDGER_BUG and app env, scenario, extra --var, invariants one of which must be named)
    ({"LEDGER_BUG": "cent_off"}, "12-slow-database-queries.yaml", [], {"balance_equation", "txn_balanced"}),
    ({"LEDGER_BUG": "non_atomic_open", "LEDGER_STEP_DELAY_MS": "1000"}, "01-kill-during-trade-open.yaml",
     ["--var", "kill_delay=600ms"], {"fills_match_trade", "position_matches_trades", "trade_has_opened_event"}),
    ({"LEDGER_BUG": "no_idempotency"}, "07-network-drop-during-order.yaml", [],
     {"duplicate", "trade_has_opened_event", "orphan_event"}),
]


@pytest.mark.parametrize("app_env,scenario,extra,named", BUGS, ids=[b[0]["LEDGER_BUG"] for b in BUGS])
def test_a_broken_ledger_fails_the_scenario_naming_the_invariant(tmp_path, fresh_ledger, app_env, scenario,
                                                                   extra, named):
    env = fresh_ledger(**app_env)
    j = tmp_path / "j.json"
    r = chaoskit("run", str(PHASE7 / scenario), "--var", "duration=12s", *extra, "--journal", str(j), "-q", env=env)
    journal = json.loads(j.read_text())
    assert r.returncode == 1, (r.returncode, journal["reasons"])
    text = " ".join(journal["reasons"])
    assert any(name in text for name in named), journal["reasons"]
