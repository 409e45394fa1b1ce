"""Logging set-up: plain lines on stderr; no timestamps under journald, which adds its own."""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(verbosity: int = 0) -> None:
    level = logging.WARNING - 10 * verbosity
    under_journald = "JOURNAL_STREAM" in os.environ
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not under_journald:
        fmt = "%(asctime)s " + fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.DEBUG))
    # slixmpp is chatty at INFO; keep it one step quieter than our own modules.
    logging.getLogger("slixmpp").setLevel(max(level + 10, logging.DEBUG))
