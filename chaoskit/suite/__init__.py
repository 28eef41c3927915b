"""Suites: many experiments in order, one journal each plus a suite journal, JUnit XML."""

from chaoskit.suite.junit import write_junit
from chaoskit.suite.run import SuiteResult, collect, run_suite

__all__ = ["SuiteResult", "collect", "run_suite", "write_junit"]
