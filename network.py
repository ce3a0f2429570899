"""Start a swarm of rcp nodes on this machine: `python network.py [--num-nodes N]`.

Starts NUM_NODES node processes (the first bootstraps the DHT, the others join it), waits until all are ONLINE,
prints one `swarm ready: ...` line and writes <run_dir>/swarm.json, where submit_task.py finds the swarm.
Then it supervises: a node that dies is restarted. Ctrl-C or SIGTERM stops everything within seconds.
Exit codes: 0 after a clean stop, 1 when the swarm could not start (one line saying why), 2 bad settings.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from rcp.settings import add_settings_arguments

    parser = argparse.ArgumentParser(description="Start and supervise a swarm of rcp nodes on this machine.")
    add_settings_arguments(parser)
    args = parser.parse_args(argv)

    from rcp.errors import ConfigError
    from rcp.settings import load_settings

    try:
        settings = load_settings(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from rcp.launcher import configure_logging, run_swarm

    configure_logging(settings.log_level)
    return run_swarm(settings)


if __name__ == "__main__":
    from rcp.cli import exit_now

    exit_now(main())
