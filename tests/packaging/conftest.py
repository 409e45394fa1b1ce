"""The packaging tests' marker: `pytest -m packaging` selects the slow ones (a .deb built and
installed into a fresh Debian chroot), `-m "not packaging"` leaves them out."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "packaging: builds the .deb and installs it into a fresh Debian chroot (slow)"
    )
