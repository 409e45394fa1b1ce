"""`ncap demo --json` prints its one line, and `ncap read` works against it from another process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from integration.proc import pid_alive, readline_within, wait_gone

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 90.0


def test_demo_json_line_and_read_from_another_process() -> None:
    with tempfile.TemporaryDirectory(prefix="ncap-demo-test-") as tmp:
        Path(tmp).chmod(0o755)  # the demo's Prosody runs as its own user below it
        _run_demo_and_read(Path(tmp) / "demo")


def _run_demo_and_read(workdir: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "ncap", "demo", "--json", "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        line = readline_within(demo, READY_TIMEOUT)
        summary = json.loads(line)
        assert set(summary) >= {"xmpp", "thing", "owner", "stranger", "registry", "sip"}
        sip = summary["sip"]
        assert sip["host"] == "127.0.0.1"
        assert isinstance(sip["port"], int)
        assert sip["user"]
        assert sip["password"]
        assert all(uri.startswith("sip:") for uri in sip["things"])
        xmpp = summary["xmpp"]
        assert xmpp["host"] == "127.0.0.1"
        assert isinstance(xmpp["port"], int)
        assert Path(xmpp["ca"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
        assert summary["thing"].startswith("thing@" + xmpp["domain"] + "/")
        for who in ("owner", "stranger"):
            assert summary[who]["jid"].endswith("@" + xmpp["domain"])
            assert summary[who]["password"]

        def ncap(who: str, *args: str) -> subprocess.CompletedProcess[str]:
            """An owner tool as its own process, logged in as *who*."""
            command, *rest = args
            connection = [
                "--jid",
                summary[who]["jid"],
                "--ca",
                xmpp["ca"],
                "--server",
                xmpp["host"],
                "--port",
                str(xmpp["port"]),
            ]
            return subprocess.run(
                [sys.executable, "-m", "ncap", command, *connection, summary["thing"], *rest],
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, "NCAP_PASSWORD": summary[who]["password"]},
                cwd=REPO,
                check=False,
            )

        owner = ncap("owner", "read", "--json")
        assert owner.returncode == 0, owner.stderr
        readout = json.loads(owner.stdout)
        names = {field["name"] for node in readout["nodes"] for field in node["fields"]}
        assert names == {"temperature", "humidity", "pressure", "coil-current"}

        stranger = ncap("stranger", "read", "--json")
        assert stranger.returncode != 0
        assert "forbidden" in stranger.stderr
        assert stranger.stdout == ""

        tree = ncap("owner", "nodes")
        assert tree.returncode == 0, tree.stderr
        assert tree.stdout.splitlines()[:2] == [
            "demo  ncap:Gateway  readable, controllable",
            "  env-sensor  ncap:Tim  readable",
        ]
        assert "    relay/relay  ncap:Channel:actuator  readable, controllable" in tree.stdout

        switched = ncap("owner", "set", "relay/relay", "relay", "true")
        assert switched.returncode == 0, switched.stderr
        assert switched.stdout.strip() == "relay/relay: relay = true"
        refused = ncap("owner", "set", "relay/relay", "relay", "maybe")
        assert refused.returncode != 0
        assert "relay" in refused.stderr

        watched = ncap("owner", "watch", "relay/relay", "relay", "--count", "1")
        assert watched.returncode == 0, watched.stderr
        assert watched.stdout.strip().endswith("relay/relay: relay=1")

        prosody_pid = int((workdir / "prosody" / "prosody.pid").read_text())
        assert pid_alive(prosody_pid)
    finally:
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=30) == 0
    assert wait_gone(prosody_pid, 10.0), "the demo left its Prosody running"


def test_unclaimed_demo_prints_its_claim_uri_and_is_claimed_from_its_qr_code() -> None:
    with tempfile.TemporaryDirectory(prefix="ncap-demo-test-") as tmp:
        Path(tmp).chmod(0o755)
        workdir = Path(tmp) / "demo"
        demo = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ncap",
                "demo",
                "--json",
                "--unclaimed",
                "--workdir",
                str(workdir),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        try:
            summary = json.loads(readline_within(demo, READY_TIMEOUT))
            assert summary["claim_uri"].startswith("iotdisco:")
            assert f"R={summary['registry']}" in summary["claim_uri"]
            xmpp = summary["xmpp"]

            def ncap(*args: str) -> subprocess.CompletedProcess[str]:
                command, *rest = args
                connection = ["--jid", summary["owner"]["jid"], "--ca", xmpp["ca"]]
                connection += ["--server", xmpp["host"], "--port", str(xmpp["port"])]
                return subprocess.run(
                    [sys.executable, "-m", "ncap", command, *connection, *rest],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    env={**os.environ, "NCAP_PASSWORD": summary["owner"]["password"]},
                    cwd=REPO,
                    check=False,
                )

            before = ncap("read", summary["thing"], "env-sensor/temperature")
            assert before.returncode != 0
            assert "forbidden" in before.stderr
            # Claim from the QR code image, as from a photo of the sticker.
            claimed = ncap("claim", str(workdir / "state" / "claim.png"))
            assert claimed.returncode == 0, claimed.stderr
            assert claimed.stdout.strip() == f"claimed {summary['thing'].split('/')[0]}"
            after = ncap("read", summary["thing"], "env-sensor/temperature", "--json")
            assert after.returncode == 0, after.stderr
            assert [f["name"] for n in json.loads(after.stdout)["nodes"] for f in n["fields"]] == [
                "temperature"
            ]
            again = ncap("claim", summary["claim_uri"])
            assert again.returncode != 0  # the key was spent by the first claim
            assert "item-not-found" in again.stderr
        finally:
            demo.send_signal(signal.SIGTERM)
            assert demo.wait(timeout=30) == 0
