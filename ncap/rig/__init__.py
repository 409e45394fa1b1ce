"""Real peers on loopback for integration tests and ``ncap demo``.

:class:`~ncap.rig.prosody.PrivateProsody` runs a private Prosody with a throw-away PKI
(:mod:`ncap.rig.pki`), and :class:`~ncap.rig.pty.PtyPair` gives two connected pseudo-terminals.
"""

from ncap.rig.pki import CaFiles, TlsFiles, make_ca, make_test_pki
from ncap.rig.prosody import Account, PrivateProsody
from ncap.rig.pty import PtyPair

__all__ = [
    "Account",
    "CaFiles",
    "PrivateProsody",
    "PtyPair",
    "TlsFiles",
    "make_ca",
    "make_test_pki",
]
