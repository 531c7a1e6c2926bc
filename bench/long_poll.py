"""Default mode through a forwarder: how fast a message reaches a listener by long polls, and
what the polls cost while nothing happens.

    python bench/long_poll.py [--pairs 3] [--messages 20] [--idle 120]
    python bench/long_poll.py --quick       # 2 pairs, 8 messages each, 40 s idle

Starts the relay (``python -m sotto.server``, gateway on, the operator's view recorded) and the
forwarder (``python -m sotto.forwarder``) as processes, then ``--pairs`` pairs of SDK clients in
this process, each client leaving from an address of its own on 127.0.0.x, in default mode,
every call sealed through the forwarder. Each pair connects by invite; then, in turn, one sends
the other ``--messages`` texts, one at a time, each after the last arrived.

Figures: delivery latency (from the call to ``send_text`` to the listener's event, which takes
the sender's sealed send, the relay's commit, the answer to the receiver's held poll, and the
receiver's decryption and commit), p50, p90, p99 and max over every message; then, with every
client listening and nobody writing for ``--idle`` seconds, the mailbox polls the relay answered
per mailbox and hour (from its recorded view), and the requests of every kind it saw per device
and hour.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from relayproc import free_port, percentile

from sotto.client import events as ev
from sotto.client.oblivious import fetch_key_config, oblivious_network
from sotto.client.sdk import Client
from sotto.crypto.passphrase import Argon2Params
from sotto.server.observer import HttpExchange, read_view

ROOT = Path(__file__).resolve().parents[1]


def _wait_for(port: int, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError("a process ended early")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextlib.contextmanager
def started(args: list[str], port: int, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        command = [sys.executable, "-m", *args]
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        _wait_for(port, child)
        yield
    finally:
        child.terminate()
        try:
            child.wait(40)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)


async def person(relay: str, forwarder: str, home: Path, name: str, address: str) -> Client:
    pinned = await fetch_key_config(relay + "/v1/gateway/keys")
    config = await fetch_key_config(forwarder + "/v1/ohttp/keys", pinned=pinned, local_address=address)
    network = oblivious_network(forwarder, config, relay_url=relay, local_address=address)
    return await Client.create(
        home / name, relay, "bench passphrase", name, network=network, kdf=Argon2Params.TESTING
    )


async def run(relay: str, forwarder: str, home: Path, args: argparse.Namespace, view: Path) -> None:
    loop = asyncio.get_running_loop()
    clients: list[Client] = []
    arrived: dict[tuple[str, str], float] = {}
    tasks: list[asyncio.Task[None]] = []

    def listen(client: Client) -> None:
        async def body() -> None:
            async for event in client.listen():
                if isinstance(event, ev.MessageReceived):
                    arrived[(client.display_name, event.text)] = loop.time()

        tasks.append(asyncio.create_task(body()))

    try:
        pairs = []
        for i in range(args.pairs):
            a = await person(relay, forwarder, home, f"A{i}", f"127.0.0.{10 + 2 * i}")
            b = await person(relay, forwarder, home, f"B{i}", f"127.0.0.{11 + 2 * i}")
            clients += [a, b]
            listen(a)
            listen(b)
            invite = await a.create_invite()
            await b.accept_invite(invite.link, a.display_name)
            pairs.append((a, b))
        deadline = loop.time() + 120
        while not all(b.is_ready(a.display_name) and a.is_ready(b.display_name) for a, b in pairs):
            if loop.time() > deadline:
                raise RuntimeError("the pairs did not connect")
            await asyncio.sleep(0.1)
        await asyncio.sleep(5)  # first polls done, receipts of the handshake sent
        latencies: list[float] = []
        for n in range(args.messages):
            for a, b in pairs:
                sender, receiver = (a, b) if n % 2 == 0 else (b, a)
                text = f"message {n} from {sender.display_name}"
                began = loop.time()
                await sender.send_text(receiver.display_name, text)
                while (receiver.display_name, text) not in arrived:
                    if loop.time() - began > 60:
                        raise RuntimeError("a message did not arrive within 60 s")
                    await asyncio.sleep(0.005)
                latencies.append(arrived[(receiver.display_name, text)] - began)
        latencies.sort()
        print(f"delivery latency over {len(latencies)} messages, {args.pairs} pairs (seconds):")
        print(
            f"  p50 {percentile(latencies, 50):.3f}  p90 {percentile(latencies, 90):.3f}  "
            f"p99 {percentile(latencies, 99):.3f}  max {latencies[-1]:.3f}  "
            f"mean {statistics.fmean(latencies):.3f}"
        )
        await asyncio.sleep(10)  # receipts of the last messages go out
        mark = len(read_view(view))
        idle_started = time.time()
        await asyncio.sleep(args.idle)
        idle = time.time() - idle_started
        records = [r for r in read_view(view)[mark:] if isinstance(r, HttpExchange)]
        inner = [r for r in records if not r.path.startswith("/v1/gateway")]
        polls = [r for r in inner if r.path.endswith("/poll")]
        mailboxes = {m for r in polls for m in r.mailboxes}
        per_mailbox = len(polls) / max(1, len(mailboxes)) * 3600 / idle
        print(
            f"idle {idle:.0f} s: {len(polls)} polls of {len(mailboxes)} mailboxes "
            f"= {per_mailbox:.0f} per mailbox per hour; all requests {len(inner)} "
            f"= {len(inner) / len(clients) * 3600 / idle:.0f} per device per hour"
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            network = client.engine.network
            await client.close()
            await network.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--idle", type=float, default=120.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.messages, args.idle = 2, 8, 40.0
    work = Path(tempfile.mkdtemp(prefix="sotto-bench-longpoll-"))
    try:
        view = work / "view.jsonl"
        relay_port, forwarder_port = free_port(), free_port()
        relay = f"http://127.0.0.1:{relay_port}"
        forwarder = f"http://127.0.0.1:{forwarder_port}"
        relay_args = ["sotto.server", "--port", str(relay_port), "--data", str(work / "data")]
        relay_args += ["--record-view", str(view)]
        forwarder_args = ["sotto.forwarder", "--relay", relay, "--port", str(forwarder_port)]
        with (
            started(relay_args, relay_port, work / "relay.log"),
            started(forwarder_args, forwarder_port, work / "forwarder.log"),
        ):
            asyncio.run(run(relay, forwarder, work, args, view))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
