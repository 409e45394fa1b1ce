"""XEP-0323 readout latency and throughput through a private Prosody on loopback.

The thing runs in its own process (so its CPU time can be measured alone) and serves a
synthetic concentrator of NODES nodes by FIELDS fields. One or more requesters, each its own
XMPP client, do momentary readouts back to back for a fixed number of rounds.

    .venv/bin/python bench/readout_latency.py [--rounds 300] [--nodes 100] [--fields 5]

Prints one line per scenario: p50/p99 latency, readouts/s, and the thing's CPU per readout.
With BENCH_PROFILE=FILE the thing's process is profiled with cProfile into FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from ncap.rig.prosody import Account, PrivateProsody
from ncap.xmpp.connection import SecureClient
from xep.xep_0323.model import Field, NodeFailure, NodeFields, NodeRef, ReadoutRequest

CLK_TCK = os.sysconf("SC_CLK_TCK")
WARMUP = 5


class SyntheticSource:
    def __init__(self, nodes: int, fields: int) -> None:
        self.node_ids = [f"node{n:03d}" for n in range(nodes)]
        self.fields = fields

    def has_node(self, node: NodeRef) -> bool:
        return node.node_id in self.node_ids

    async def readout(self, request: ReadoutRequest) -> AsyncIterator[NodeFields | NodeFailure]:
        wanted = [node.node_id for node in request.nodes] or self.node_ids
        now = datetime.now(UTC)
        for node_id in wanted:
            yield NodeFields(
                NodeRef(node_id),
                now,
                tuple(
                    Field.numeric(f"field{f}", 20.0 + f / 10, "°C", 2) for f in range(self.fields)
                ),
            )


async def serve(args: argparse.Namespace) -> None:
    """The thing's side: answer readouts until stdin closes."""
    thing = SecureClient(
        args.jid,
        os.environ["BENCH_PASSWORD"],
        ca_file=Path(args.ca),
        server="127.0.0.1",
        port=args.port,
    )
    thing.sensordata.source = SyntheticSource(args.nodes, args.fields)

    async def allow(_requester: object, _request: object) -> bool:
        return True

    thing.sensordata.authorize = allow
    await thing.start(30)
    thing.send_presence()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await thing.disconnect(wait=1.0)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def connect(account: Account, prosody: PrivateProsody) -> SecureClient:
    client = SecureClient(
        account.jid,
        account.password,
        ca_file=prosody.ca_file,
        server=prosody.host,
        port=prosody.c2s_port,
    )
    await client.start(30)
    return client


async def requester(
    client: SecureClient, thing: str, rounds: int, node: str | None, start: asyncio.Barrier
) -> list[float]:
    nodes = (NodeRef(node),) if node else ()
    for _ in range(WARMUP):
        await client.sensordata.request_readout(thing, nodes=nodes, timeout=30)
    await start.wait()
    latencies = []
    for _ in range(rounds):
        started = time.perf_counter()
        readout = await client.sensordata.request_readout(thing, nodes=nodes, timeout=30)
        latencies.append(time.perf_counter() - started)
        assert readout.fields
    return latencies


async def scenario(
    clients: list[SecureClient], thing: str, pid: int, rounds: int, node: str | None
) -> dict[str, object]:
    """All requesters warm up, then start together; only the measured rounds are timed."""
    start = asyncio.Barrier(len(clients) + 1)
    runs = [
        asyncio.ensure_future(requester(client, thing, rounds, node, start)) for client in clients
    ]
    await start.wait()
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    results = await asyncio.gather(*runs)
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu_before
    latencies = sorted(x for result in results for x in result)
    count = len(latencies)
    return {
        "requesters": len(clients),
        "readout": f"one node ({node})" if node else "all nodes",
        "readouts": count,
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[min(count - 1, int(count * 0.99))] * 1000, 2),
        "per_s": round(count / elapsed, 1),
        "thing_cpu_ms_per_readout": round(cpu / count * 1000, 3),
    }


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="ncap-bench-") as tmp:
        os.chmod(tmp, 0o755)  # noqa: S103 - the private Prosody runs as its own user
        prosody = PrivateProsody(Path(tmp) / "prosody", log_level="warn")
        thing = prosody.register("thing")
        readers = [prosody.register(f"reader{n}") for n in range(10)]
        with prosody:
            server = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--serve",
                    "--jid",
                    thing.jid,
                    "--ca",
                    str(prosody.ca_file),
                    "--port",
                    str(prosody.c2s_port),
                    "--nodes",
                    str(args.nodes),
                    "--fields",
                    str(args.fields),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "BENCH_PASSWORD": thing.password},
            )
            try:
                assert server.stdout is not None
                assert server.stdout.readline().strip() == "ready"
                full = f"{thing.jid}/bench"
                clients = [await connect(reader, prosody) for reader in readers]
                for count in (1, 10):
                    for node in ("node050", None):
                        rounds = args.rounds if node else max(args.rounds // 10, 10)
                        result = await scenario(clients[:count], full, server.pid, rounds, node)
                        print(json.dumps(result), flush=True)
                for client in clients:
                    await client.disconnect(wait=1.0)
            finally:
                assert server.stdin is not None
                server.stdin.close()
                server.wait(timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--fields", type=int, default=5)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--jid", help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        arguments.jid = f"{arguments.jid}/bench"
        profile_to = os.environ.get("BENCH_PROFILE")  # a file: profile the thing with cProfile
        if profile_to:
            import cProfile

            cProfile.run("asyncio.run(serve(arguments))", profile_to)
        else:
            asyncio.run(serve(arguments))
    else:
        asyncio.run(main(arguments))
