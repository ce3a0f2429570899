"""Run one rcp node in the foreground: `python node.py [--initial-peers MADDR ...]`.

Without --initial-peers it starts a new swarm; with them it joins one (this is how a second machine joins:
give it the multiaddrs `python network.py` printed, and --host-maddrs/--announce-maddrs it can be reached on).
Ctrl-C or SIGTERM announces OFFLINE and stops within seconds. Exit codes: 0 clean stop, 1 start-up or runtime
failure (one line on stderr saying what to do), 2 bad settings.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys


def build_parser() -> argparse.ArgumentParser:
    from rcp.settings import add_settings_arguments

    parser = argparse.ArgumentParser(description="Run one rcp swarm node in the foreground.")
    parser.add_argument("--ready-file", metavar="PATH",
                        help="write this node's peer id and multiaddrs here (JSON) once it is ONLINE")
    parser.add_argument("--exit-with-parent", type=int, metavar="PID",
                        help="stop when process PID (the launcher that started this node) dies")
    add_settings_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.exit_with_parent:
        from rcp.membership import set_parent_death_signal

        # SIGTERM, not SIGKILL: an orphaned node still announces OFFLINE and removes its sandbox containers.
        set_parent_death_signal(signal.SIGTERM)
        if os.getppid() != args.exit_with_parent:  # the launcher died before the signal was armed
            return 1
    from rcp.errors import ConfigError, RcpError
    from rcp.settings import load_settings

    try:
        settings = load_settings(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from rcp.launcher import configure_logging
    from rcp.node import run

    configure_logging(settings.log_level)
    try:
        return run(settings, ready_file=args.ready_file)
    except RcpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    from rcp.cli import exit_now

    exit_now(main())
