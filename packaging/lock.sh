#!/usr/bin/env bash
# Regenerates packaging/requirements.lock: every runtime dependency of pyproject.toml pinned to
# one version, with the sha256 of every file PyPI has for it (so one lock serves amd64 and arm64).
# Run it after changing [project] dependencies; `make deb` and the packaging tests use the lock
# as it is and never resolve anything themselves.
#
#   packaging/lock.sh            resolve with python3.13 (the Python of Debian trixie / Pi OS)
#   PYTHON=python3.11 packaging/lock.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.13}
tools=build/lock-venv
if [ ! -x "$tools/bin/pip-compile" ]; then
    "$PYTHON" -m venv "$tools"
    "$tools/bin/python" -m pip install --quiet --upgrade pip 'pip-tools>=7.4,<8'
fi
# The dependencies are resolved for the lock's interpreter, not for the developer's one.
CUSTOM_COMPILE_COMMAND="packaging/lock.sh" "$tools/bin/pip-compile" \
    --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links --resolver=backtracking \
    --output-file packaging/requirements.lock pyproject.toml
echo "lock: wrote packaging/requirements.lock ($("$tools/bin/python" --version))"
