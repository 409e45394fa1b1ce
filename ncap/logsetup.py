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
    # slixmpp and pymodbus are chatty, and their errors repeat what our modules report in
    # plainer words: show them only when asked for more output.
    slixmpp_level = logging.CRITICAL if verbosity == 0 else max(level + 10, logging.DEBUG)
    logging.getLogger("slixmpp").setLevel(slixmpp_level)
    logging.getLogger("pymodbus").setLevel(slixmpp_level)
