"""The ``chaoskit`` command. Subcommands are imported only when invoked, so ``--version`` and
``validate`` stay fast (start-up is benchmarked in bench/startup.py)."""

from __future__ import annotations

import importlib
import sys

import click

from chaoskit import __version__

# command name -> "module:attribute"; each module owns one family of commands.
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("chaoskit.cli.core:validate", "Check experiment files; report every error with file:line."),
    "run": ("chaoskit.cli.core:run", "Run one experiment against its target."),
    "list": ("chaoskit.cli.core:list_", "List faults, probes, expectations, triggers, checkers."),
    "schema": ("chaoskit.cli.core:schema", "Print the JSON Schema of the experiment format."),
    "rollback": ("chaoskit.cli.core:rollback", "Revert faults a dead runner left behind."),
    "replay": ("chaoskit.cli.core:replay", "Re-run a journal's experiment with the same seed and schedule."),
    "up": ("chaoskit.cli.stack:up", "Build images and bring a compose stack up, healthy."),
    "down": ("chaoskit.cli.stack:down", "Tear a compose stack down."),
    "images": ("chaoskit.cli.stack:images", "Build the local base image (debootstrap when no registry)."),
    "snapshot": ("chaoskit.cli.verify:snapshot", "Fingerprint ledger tables into a snapshot file."),
    "verify": ("chaoskit.cli.verify:verify", "Run ledger verification (invariants, diff, history)."),
    "audit": ("chaoskit.cli.verify:audit", "The full manual ledger audit as one command."),
    "proxy": ("chaoskit.cli.proxy:proxy", "Run the built-in TCP fault proxy (Toxiproxy API)."),
    "suite": ("chaoskit.cli.suite:suite", "Run many experiments; summary table and JUnit."),
    "soak": ("chaoskit.cli.soak_report:soak", "Continuous-monitoring gate with alert rules."),
    "report": ("chaoskit.cli.soak_report:report", "Render journals into a self-contained HTML report."),
    "gauntlet": ("chaoskit.cli.suite:gauntlet", "Soak -> chaos suite -> audit, stop on the first failing gate."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        mod_name, attr = target.split(":")
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name != mod_name:
                raise
            return _missing(name)
        return getattr(mod, attr)

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        """A chaoskit error that escapes a command is one line and its exit code, never a traceback."""
        from chaoskit.errors import ChaoskitError, ExperimentError

        try:
            return super().invoke(ctx)
        except ExperimentError as exc:
            for p in exc.problems:
                click.echo(f"error: {p}", err=True)
            sys.exit(exc.exit_code)
        except ChaoskitError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in sorted(COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _missing(name: str) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def cmd(args: tuple[str, ...]) -> None:
        click.echo(f"chaoskit {name}: not available in this build", err=True)
        sys.exit(2)

    return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="chaoskit")
def main() -> None:
    """Container-level chaos experiments that prove the ledger lost nothing."""
