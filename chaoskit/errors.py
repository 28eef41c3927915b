"""Exception types. Each maps to one CLI exit code, so callers never guess."""

from __future__ import annotations


class ChaoskitError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with when this escapes a command."""

    exit_code = 3


class Problem:
    """One located problem in an experiment file. A plain class, not a dataclass: dataclasses
    pulls in inspect, a fifth of the fast validate path's start-up."""

    __match_args__ = ("file", "line", "key", "message")

    def __init__(self, file: str, line: int | None, key: str, message: str):
        self.file = file
        self.line = line
        self.key = key
        self.message = message

    def __repr__(self) -> str:
        return f"Problem(file={self.file!r}, line={self.line!r}, key={self.key!r}, message={self.message!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Problem):
            return NotImplemented
        return vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it was

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class ExperimentError(ChaoskitError):
    """The experiment (or an argument) is invalid. Carries every problem found, not just the first."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class TargetError(ChaoskitError):
    """The target could not be reached or matched nothing."""


class FaultError(ChaoskitError):
    """A fault could not be applied or reverted."""


class ProbeError(ChaoskitError):
    """A probe could not read its value (distinct from a value that fails its expectation)."""


class Interrupted(ChaoskitError):
    """The run was stopped by a signal; exit code follows the shell convention (128 + signo)."""

    def __init__(self, signo: int):
        self.signo = signo
        self.exit_code = 128 + signo
        super().__init__(f"interrupted by signal {signo}")
