"""Send a task to the swarm and watch it being solved: `python submit_task.py "Write is_prime(n) with tests"`.

Finds the swarm through the contact file `python network.py` wrote (or --initial-peers), shows the live tree of
subtasks, then prints the final code and a one-line verdict. A task of "-" is read from stdin (for texts longer
than a command line takes). --out DIR also writes the files, their tests and trace.json; --json prints a
machine-readable result instead.
Exit codes: 0 the final code passed its tests, 1 finished without passing code, 2 usage error,
3 no swarm reachable, or it failed or timed out mid-task.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CLIENT_SETTINGS = ["initial_peers", "run_dir", "submit_timeout", "max_llm_calls", "log_level"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own exit code is 2 too; this keeps the message to one line
        self.exit(2, f"error: {message}; see --help\n")


def main(argv: list[str] | None = None) -> int:
    from rcp.settings import add_settings_arguments

    parser = _Parser(description="Send a coding task to the rcp swarm and show its progress.")
    parser.add_argument("task", help='what to build, in plain words; "-" reads it from stdin')
    parser.add_argument("--out", type=Path, metavar="DIR", help="write the code, its tests and trace.json here")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (progress still on stderr)")
    parser.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds (default SUBMIT_TIMEOUT)")
    parser.add_argument("--node", metavar="PEER", help="entry node: a peer id or its last characters")
    add_settings_arguments(parser, CLIENT_SETTINGS)
    args = parser.parse_args(argv)
    if args.timeout is not None and not args.timeout > 0:
        parser.error(f"--timeout must be a positive number of seconds, not {args.timeout}")

    from rcp.client import EXIT_SWARM, EXIT_USAGE, UsageError, root_spec, run, task_text
    from rcp.errors import ConfigError, RcpError
    from rcp.settings import load_settings

    try:
        if args.task == "-":
            args.task = task_text(sys.stdin.buffer.read())
        settings = load_settings(args)
        root_spec(args.task, settings, args.timeout or settings.submit_timeout)  # an empty task fails here, at once
    except (ConfigError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    import uvloop

    from rcp.launcher import configure_logging

    configure_logging("WARNING" if settings.log_level == "INFO" else settings.log_level)
    try:
        return uvloop.run(run(settings, args.task, node=args.node, timeout=args.timeout, out=args.out,
                              as_json=args.json))
    except RcpError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_SWARM
    except KeyboardInterrupt:
        print("interrupted: the task was cancelled on the swarm", file=sys.stderr)
        return 130


if __name__ == "__main__":
    from rcp.cli import exit_now

    exit_now(main())
