"""Loader fuzzing: whatever the file holds, the loader answers with located problems, never a traceback."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaoskit.errors import ExperimentError
from chaoskit.experiment import load_experiment

KEYS = [
    "chaoskit", "title", "target", "compose", "file", "project", "vars", "hypothesis", "method", "rollbacks",
    "fault", "action", "probe", "name", "url", "expect", "status", "equals", "range", "jsonpath", "path",
    "target", "service", "mode", "fixed", "percent", "when", "after", "log", "match", "nth", "within", "at",
    "window", "wait", "until", "timeout", "pause", "parallel", "signal", "duration", "verify", "workload",
    "settings", "guards", "all", "any", "dsn", "query", "seed", "tags", "selector",
]
NAMES = ["container.kill", "container.pause", "http", "sql", "command", "container", "hypothesis", "random", "SIGKILL"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(NAMES), st.sampled_from(["30s", "5m", "-1s", "${x}", "${env:HOME}", "${nope}", "$${lit}", "((", ""]),
    st.text(max_size=12),
)
docs = st.recursive(
    scalars,
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.sampled_from(KEYS), kids, max_size=6)),
    max_leaves=30,
)


def check(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "fuzz.yaml"
        p.write_text(text)
        try:
            load_experiment(p)
        except ExperimentError as exc:
            assert exc.problems
            for prob in exc.problems:
                assert prob.file == str(p)
                assert isinstance(prob.line, int) and prob.line >= 1, prob
                assert prob.message


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(docs)
def test_structured_documents(doc):
    if isinstance(doc, dict) and "chaoskit" not in doc:
        doc = {"chaoskit": 1, "title": "f", **doc}
    check(yaml.safe_dump(doc))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(alphabet=st.sampled_from(list("{}[]:,-'\"#&*!|> \n\tabc1$%@")), max_size=80))
def test_arbitrary_text(text):
    check(text)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 400), st.text(max_size=5))
def test_mutated_good_file(cut, insert):
    from tests_support_good import GOOD

    check(GOOD[:cut] + insert + GOOD[cut:])
