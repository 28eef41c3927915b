"""History checker: parsing and classification without a database (the DB-backed final read is
covered by the mutation corpus in test_checkers_mutation.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaoskit.checkers import history as h
from chaoskit.checkers.history import HistorySpec, classify, parse_history


def write(tmp_path: Path, recs: list[dict | str]) -> Path:
    p = tmp_path / "history.jsonl"
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in recs))
    return p


def op(t: str, oid: object, opname: str = "open", process: int = 0, **value: object) -> dict:
    return {"type": t, "process": process, "op": opname, "id": oid, "time": 1, "value": value}


SPEC = HistorySpec(table="trades", id_column="client_order_id", op="open")


def test_every_class_is_named(tmp_path: Path) -> None:
    recs = []
    for oid, outcome in [("ok1", "ok"), ("lost", "ok"), ("dup", "ok"), ("zomb", "fail"),
                         ("failed", "fail"), ("rec", "info"), ("gone", "info"), ("dupi", "info"),
                         ("open-ended", None)]:
        recs.append(op("invoke", oid))
        if outcome:
            recs.append(op(outcome, oid))
    parsed = parse_history(write(tmp_path, recs), [SPEC])
    present = {"ok1": 1, "dup": 2, "zomb": 1, "rec": 1, "dupi": 3, "phan": 1, "open-ended": 1}
    res = classify(SPEC, parsed.states[0], present)
    by = {f["name"]: f for f in res.findings}
    assert not res.ok
    assert by["lost"]["examples"] == ["lost"]
    assert {e["id"] for e in by["duplicate"]["examples"]} == {"dup", "dupi"}
    assert by["zombie"]["examples"] == [{"id": "zomb", "count": 1}]
    assert by["phantom"]["examples"] == [{"id": "phan", "count": 1}]
    # unknown outcomes are never errors in themselves: present once -> recovered (ok)
    assert by["recovered"]["ok"] and by["recovered"]["count"] == 2  # rec + open-ended
    assert res.defects() == {"lost", "duplicate", "zombie", "phantom"}


def test_clean_history_passes_and_retries_are_one_operation(tmp_path: Path) -> None:
    recs = [op("invoke", "a"), op("fail", "a"), op("invoke", "a", process=1), op("ok", "a", process=1),
            op("invoke", 7), op("info", 7), op("invoke", "x", opname="close"), op("ok", "x", opname="close")]
    parsed = parse_history(write(tmp_path, recs), [SPEC])
    assert parsed.ops == 3  # close is routed to no spec
    res = classify(SPEC, parsed.states[0], {"a": 1})
    assert res.ok, res.summary()
    assert res.info["history:trades.client_order_id"]["unapplied"] == 1


def test_rows_present_before_the_run_are_not_phantoms(tmp_path: Path) -> None:
    parsed = parse_history(write(tmp_path, [op("invoke", "n"), op("ok", "n")]), [SPEC])
    res = classify(SPEC, parsed.states[0], {"old": 1, "n": 1}, before={"old": 1})
    assert res.ok, res.summary()
    res = classify(SPEC, parsed.states[0], {"old": 1, "n": 2}, before={"old": 1, "n": 1})
    assert res.ok, "an id that pre-existed once and was added once is present once"


def test_malformed_lines_are_reported_with_line_numbers(tmp_path: Path) -> None:
    recs = [op("invoke", "a"), "{not json", op("ok", "a"), json.dumps([1, 2]),
            json.dumps({"type": "bogus", "id": "q"}), "", op("ok", "b"), op("invoke", 1.5),
            {"type": "invoke", "process": 3, "op": "open"}, {"type": "ok", "process": 3, "op": "open"}]
    p = write(tmp_path, recs)
    for loader in (h._loads, None):
        saved = h._loads
        h._loads = loader  # exercise both orjson and the stdlib parser
        try:
            parsed = parse_history(p, [SPEC])
        finally:
            h._loads = saved
        assert [n for n, _ in parsed.malformed] == [2, 4, 5, 8]
        assert parsed.unmatched == ["b"]
        assert parsed.without_id == 1  # a read without an id is not malformed
        res = h.history_findings(parsed, p)
        assert res.defects() == {"malformed", "unmatched"}


def test_bounds_for_effects_without_ids(tmp_path: Path) -> None:
    spec = HistorySpec(table="trades", id_column="client_order_id", op="open",
                       bounds=[h.BoundSpec(name="deposits", op="deposit", query="select 0")])
    recs = [
        {"type": "invoke", "process": 1, "op": "deposit", "value": {"amount_cents": 500}},
        {"type": "ok", "process": 1, "op": "deposit"},
        {"type": "invoke", "process": 2, "op": "deposit", "value": {"amount_cents": 300}},
        {"type": "info", "process": 2, "op": "deposit"},
        {"type": "invoke", "process": 3, "op": "deposit", "value": {"amount_cents": "-200"}},
        {"type": "fail", "process": 3, "op": "deposit"},
        {"type": "invoke", "process": 1, "op": "deposit", "value": {"amount_cents": -50}},
    ]
    parsed = parse_history(write(tmp_path, recs), [spec])
    t = parsed.bounds[0]
    assert (t.ok, t.unknown_pos, t.unknown_neg) == (500, 300, -50)
    assert h.check_bounds(spec, parsed, 0, [500]).ok
    assert h.check_bounds(spec, parsed, 0, [800]).ok
    assert h.check_bounds(spec, parsed, 0, [450]).ok
    assert not h.check_bounds(spec, parsed, 0, [801]).ok
    bad = h.check_bounds(spec, parsed, 0, [449])
    assert not bad.ok and bad.findings[0]["low"] == 450


def test_float_money_is_refused(tmp_path: Path) -> None:
    spec = HistorySpec(table="t", id_column="id", bounds=[h.BoundSpec(name="b", query="select 0")])
    parsed = parse_history(write(tmp_path, [op("invoke", "a", amount_cents=1.5), op("ok", "a")]), [spec])
    assert not h.check_bounds(spec, parsed, 0, [0]).ok


def test_spec_needs_a_way_to_read() -> None:
    with pytest.raises(ValueError, match="table \\+ id_column"):
        HistorySpec()
    with pytest.raises(ValueError, match="%\\(id\\)s"):
        HistorySpec(present_once="select 1")


def test_parsing_in_two_halves_equals_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Big histories are parsed by two processes, one half each: the merge must find exactly
    what one pass finds, including completions whose invoke is in the other half, malformed
    lines (numbered across the halves) and ops routed to two specs."""
    import random

    rnd = random.Random(7)
    lines = []
    for i in range(6000):
        lines.append(json.dumps({"type": rnd.choice(["invoke", "ok", "fail", "info"]),
                                 "op": rnd.choice(["open", "close"]), "id": f"o{rnd.randrange(900)}"}))
        if i % 997 == 0:
            lines.append("{not json")
        if i % 1301 == 0:
            lines.append("")
        if i % 1703 == 0:
            lines.append(json.dumps({"type": "ok", "op": "open", "id": 3.5}))
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(lines) + "\n")
    specs = [h.HistorySpec(table="t", id_column="a", op="open"),
             h.HistorySpec(table="t2", id_column="b", op="close")]
    one = h.parse_history(path, specs)
    monkeypatch.setattr(h, "_SPLIT_BYTES", 1)
    job = h.ParseJob(path, specs)
    try:
        assert len(job._procs) == 2
        two = job.result()
    finally:
        job.close()
    for f in ("states", "lines", "ops", "malformed", "malformed_count", "unmatched_count",
              "without_id"):
        assert getattr(two, f) == getattr(one, f), f
    assert one.unmatched_count > 0 and one.malformed_count > 0  # the cases were exercised
    assert two.unmatched == one.unmatched
