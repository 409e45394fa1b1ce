"""Running a packaged server as its own system user when the tests run as root.

Prosody and Kamailio refuse (or should not) run as root; :func:`drop_to` gives the command
prefix that starts them as their package's user (``setpriv`` execs, so the child's PID is the
server's own), and :func:`hand_over` gives that user the work directory.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from ncap.errors import RigError


def running_as_root() -> bool:
    return os.geteuid() == 0


def drop_to(user: str) -> list[str]:
    """The argv prefix that runs a command as *user* (nothing unless we are root)."""
    if not running_as_root():
        return []
    return ["setpriv", "--reuid", user, "--regid", user, "--init-groups", "--"]


def hand_over(workdir: Path, user: str, *, hint: str = "") -> None:
    """As root, chown *workdir* to *user*, once it is known that *user* can reach it."""
    if not running_as_root():
        return
    try:
        entry = pwd.getpwnam(user)
    except KeyError as err:
        raise RigError(f"running as root but there is no {user!r} user{hint}") from err
    groups = set(os.getgrouplist(user, entry.pw_gid))
    for parent in workdir.parents:
        st = parent.stat()
        searchable = (
            st.st_mode & 0o001
            or (st.st_uid == entry.pw_uid and st.st_mode & 0o100)
            or (st.st_gid in groups and st.st_mode & 0o010)
        )
        if not searchable:
            raise RigError(
                f"user {user!r} cannot reach {workdir}: {parent} has mode "
                f"{st.st_mode & 0o777:o}; use a directory such as tempfile.mkdtemp()"
            )
    for root, dirs, files in os.walk(workdir):
        for name in (root, *(os.path.join(root, n) for n in (*dirs, *files))):
            os.chown(name, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
