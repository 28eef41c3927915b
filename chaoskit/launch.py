"""The ``chaoskit`` console script.

``chaoskit validate FILE...`` (no options) whose files the fast validator certainly accepts is
answered here, before click is imported: click is a third of such a start-up (bench/startup.py).
Anything else, including every file that is not certainly valid, goes to the click group in
``chaoskit.cli``, which stays the one authority on options, errors and exit codes.
"""

from __future__ import annotations

import sys


def run() -> None:
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "validate" and not any(a.startswith("-") for a in args[1:]):
        from chaoskit.experiment.fast import certainly_valid

        if all(certainly_valid(f) for f in args[1:]):
            out = "".join(f"ok: {f}\n" for f in args[1:])
            try:
                sys.stdout.write(out)
                sys.stdout.flush()
            except UnicodeEncodeError:  # click.echo knows what to do with such names
                pass
            else:
                sys.exit(0)
    from chaoskit.cli import main

    main()
