"""What the entry points (network.py, node.py, submit_task.py) share once they are done."""

from __future__ import annotations

import logging
import os
import sys


def exit_now(code: int) -> None:
    """Exit without interpreter finalization: everything is closed by now, and tearing down torch (imported by
    hivemind) takes 1-2 s more (measured), which a Ctrl-C that must finish within seconds cannot spare."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
