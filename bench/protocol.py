"""Protocol benchmark: Sotto's 1:1 message path next to libsignal (from Node) and the primitive floor.

    python bench/protocol.py [--n 20000] [--setups 50] [--runs 5] [--json out.json] [--check] [--pure-only]

Figures, each the median of ``--runs`` runs:

* **one-direction**: µs per 100-byte message, encrypt + serialize + parse + decrypt, on an
  Alice→Bob stream after one untimed reply (no DH ratchet step per message);
* **ping-pong**: the same with the direction alternating every message (a DH ratchet step each);
* **setup**: process a prekey bundle + first PreKey message encrypt + decrypt, over fresh
  sessions, key generation untimed;
* **libsignal**: the same three, measured by ``bench/libsignal_bench.mjs`` in this run;
* **floor**: the primitives alone (HMAC, HKDF, AES, X25519, XEdDSA, ML-KEM) that each path
  cannot avoid, called back to back with no protocol logic.

Sotto's side runs twice, each in its own process: with the per-message core compiled by mypyc
(``bench/compiled.py`` builds it from the current sources; ``SOTTO_MYPYC=1 pip install
--no-build-isolation .`` installs the same build) and as plain Python. The targets are judged
on the compiled build, the form Sotto is meant to be installed in; the plain-Python figures are
printed beside them. Without a C compiler only the plain-Python side runs, and is judged.

Both sides run pinned to the same core, one after the other. Around each run, ``/proc/stat``
gives that core's CPU steal and the share of it other processes took (its busy time less ours);
a run with more than 2% steal or 5% other load is repeated (up to 5 tries, the least disturbed
one kept), and both are reported: on a shared machine other work slows the two sides unevenly.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import compiled

from sotto.crypto import dh, kem, xeddsa
from sotto.crypto.cipher import aes256_cbc_decrypt, aes256_cbc_encrypt
from sotto.crypto.kdf import hkdf_sha256, hmac_sha256, hmac_sha256_pair
from sotto.crypto.keys import KeyPair
from sotto.crypto.random import Rng, system_rng
from sotto.protocol import session
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import (
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
    build_bundle,
)
from sotto.protocol.messages import CiphertextMessage, CiphertextMessageType
from sotto.protocol.record import SessionRecord

HERE = pathlib.Path(__file__).resolve().parent
NOW_MS = 1_750_000_000_000
PLAINTEXT = bytes(range(100))
LABELS = {"one_direction_us": "one-direction µs", "ping_pong_us": "ping-pong µs", "setup_us": "setup µs"}
TARGETS = {"one_direction_us": 60.0, "ping_pong_us": 220.0, "setup_us": 1500.0}
MIN_SPEEDUP = {"one_direction_us": 5.0}
"""The 5× bar is for the message path. A DH ratchet step (ping-pong) and a handshake (setup) are
bounded below by X25519, XEdDSA and ML-KEM themselves, whose floor is printed beside them."""
BENCH_CORE = 0
MAX_STEAL = 0.02
MAX_OTHER_LOAD = 0.05
TRIES = 5
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# ------------------------------------------------------------------------------ interference
@dataclass(frozen=True)
class Interference:
    """Shares of the benchmark core's time during a run: stolen by the hypervisor, used by others."""

    steal: float
    other_load: float

    @property
    def acceptable(self) -> bool:
        return self.steal <= MAX_STEAL and self.other_load <= MAX_OTHER_LOAD

    def __str__(self) -> str:
        return f"steal {self.steal:.2%}, other load {self.other_load:.1%}"


def _core_ticks(core: int) -> tuple[int, int]:
    """(busy, steal) clock ticks of one core so far; busy = user + nice + system + irq + softirq."""
    prefix = f"cpu{core} "
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            if line.startswith(prefix):
                user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in line.split()[1:9])
                return user + nice + system + irq + softirq, steal
    raise RuntimeError(f"no {prefix.strip()} line in /proc/stat")


def _own_cpu_seconds() -> float:
    """CPU time of this process and its finished children (Node runs as one)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measure_with_interference(run: Callable[[], dict[str, float]]) -> tuple[dict[str, float], Interference]:
    """Run until steal and other load stay under their limits (up to 5 tries); keep the least disturbed."""
    best: tuple[dict[str, float], Interference] | None = None
    for _ in range(TRIES):
        busy0, steal0 = _core_ticks(BENCH_CORE)
        own0, wall0 = _own_cpu_seconds(), time.monotonic()
        figures = run()
        busy1, steal1 = _core_ticks(BENCH_CORE)
        own1, wall1 = _own_cpu_seconds(), time.monotonic()
        seconds = max(wall1 - wall0, 1e-9)
        others = (busy1 - busy0) / _TICKS_PER_SECOND - (own1 - own0)
        found = Interference((steal1 - steal0) / _TICKS_PER_SECOND / seconds, max(others, 0.0) / seconds)
        if best is None or found.steal + found.other_load < best[1].steal + best[1].other_load:
            best = (figures, found)
        if found.acceptable:
            break
        print(f"  {found}: run repeated", file=sys.stderr)
    assert best is not None
    return best


# ------------------------------------------------------------------------------ Sotto
@dataclass
class Device:
    address: ProtocolAddress
    identity: KeyPair
    registration_id: int
    signed: SignedPreKeyRecord
    kyber: KyberPreKeyRecord
    one_time: PreKeyRecord

    @classmethod
    def create(cls, name: str, rng: Rng) -> Device:
        identity = KeyPair.generate(rng)
        return cls(
            ProtocolAddress(name, 1),
            identity,
            int.from_bytes(rng(2), "big") & 0x3FFF,
            SignedPreKeyRecord.generate(1, identity, NOW_MS, rng),
            KyberPreKeyRecord.generate(1, identity, NOW_MS, rng, last_resort=False),
            PreKeyRecord.generate(1, rng),
        )

    def bundle(self) -> PreKeyBundle:
        return build_bundle(
            registration_id=self.registration_id,
            device_id=1,
            identity_key=self.identity.public,
            signed_pre_key=self.signed,
            kyber_pre_key=self.kyber,
            pre_key=self.one_time,
        )


ALICE = "9d0652a3-dcc3-4d11-975f-74d61598733f"
BOB = "796abedb-ca4e-4f18-8803-1fde5b921f9f"


def _setup_once(alice: Device, bob: Device, rng: Rng) -> tuple[SessionRecord, SessionRecord]:
    a_rec = session.process_prekey_bundle(
        None,
        our_identity=alice.identity,
        our_registration_id=alice.registration_id,
        our_address=alice.address,
        their_address=bob.address,
        bundle=bob.bundle(),
        now_ms=NOW_MS,
        rng=rng,
    )
    a_rec, msg = session.encrypt(
        a_rec, PLAINTEXT, our_address=alice.address, their_address=bob.address, now_ms=NOW_MS, rng=rng
    )
    result = session.decrypt_prekey_message(
        None,
        msg.body,
        our_identity=bob.identity,
        our_registration_id=bob.registration_id,
        our_address=bob.address,
        their_address=alice.address,
        signed_pre_key=bob.signed,
        kyber_pre_key=bob.kyber,
        one_time_pre_key=bob.one_time,
        rng=rng,
    )
    if result.plaintext != PLAINTEXT:
        raise AssertionError("setup: plaintext mismatch")
    return a_rec, result.record


def _send(sender: Device, receiver: Device, records: dict[str, SessionRecord], rng: Rng) -> CiphertextMessage:
    records[sender.address.name], msg = session.encrypt(
        records[sender.address.name],
        PLAINTEXT,
        our_address=sender.address,
        their_address=receiver.address,
        now_ms=NOW_MS,
        rng=rng,
    )
    return msg


def _receive(
    receiver: Device, sender: Device, records: dict[str, SessionRecord], msg: CiphertextMessage, rng: Rng
) -> None:
    if msg.type is not CiphertextMessageType.WHISPER:
        raise AssertionError("expected a Whisper message after the first reply")
    records[receiver.address.name], pt = session.decrypt_signal_message(
        records[receiver.address.name],
        msg.body,
        our_address=receiver.address,
        their_address=sender.address,
        rng=rng,
    )
    if pt != PLAINTEXT:
        raise AssertionError("plaintext mismatch")


def sotto_run(n: int, setups: int) -> dict[str, float]:
    rng = system_rng
    pairs = [(Device.create(ALICE, rng), Device.create(BOB, rng)) for _ in range(setups)]
    t0 = time.perf_counter()
    for alice, bob in pairs:
        _setup_once(alice, bob, rng)
    setup_us = (time.perf_counter() - t0) / setups * 1e6

    figures = {"setup_us": setup_us}
    for mode in ("one_direction_us", "ping_pong_us"):
        alice, bob = pairs[0]
        a_rec, b_rec = _setup_once(alice, bob, rng)
        records = {ALICE: a_rec, BOB: b_rec}
        _receive(alice, bob, records, _send(bob, alice, records, rng), rng)  # untimed reply
        t0 = time.perf_counter()
        for i in range(n):
            if mode == "ping_pong_us" and i % 2:
                _receive(alice, bob, records, _send(bob, alice, records, rng), rng)
            else:
                _receive(bob, alice, records, _send(alice, bob, records, rng), rng)
        figures[mode] = (time.perf_counter() - t0) / n * 1e6
    return figures


# ------------------------------------------------------------------------------ primitive floor
def floor_run(n: int) -> dict[str, float]:
    """The primitives each path needs, back to back, with no parsing, state or checks."""
    rng = system_rng
    key, iv = rng(32), rng(16)
    ct = aes256_cbc_encrypt(key, iv, PLAINTEXT)

    def one_side() -> None:
        # chain step (2 HMAC under one key), SPQR chain step (HKDF), message keys (HKDF), AES-CBC,
        # MAC (HMAC)
        hmac_sha256_pair(key, b"\x01", b"\x02")
        hkdf_sha256(key, 64, b"spqr", key)
        hkdf_sha256(key, 80, b"keys", key)
        hmac_sha256(key, ct)

    t0 = time.perf_counter()
    for _ in range(n):
        one_side()
        aes256_cbc_encrypt(key, iv, PLAINTEXT)
        one_side()
        aes256_cbc_decrypt(key, iv, ct)
    message = (time.perf_counter() - t0) / n * 1e6

    ours, theirs = KeyPair.generate(rng), KeyPair.generate(rng)
    m = max(n // 10, 100)
    t0 = time.perf_counter()
    for _ in range(m):  # every ping-pong message costs its receiver a DH ratchet step
        dh.agree(ours.private, theirs.public)
        KeyPair.generate(rng)
        dh.agree(ours.private, theirs.public)
        hkdf_sha256(key, 64, b"root", key)
        hkdf_sha256(key, 64, b"root", key)
    ratchet = (time.perf_counter() - t0) / m * 1e6

    kem_pair = kem.KemKeyPair.generate(rng)
    sig = xeddsa.sign(ours.private, ours.public.to_bytes(), rng)
    k = max(n // 100, 20)
    t0 = time.perf_counter()
    for _ in range(k):
        xeddsa.verify(ours.public, ours.public.to_bytes(), sig)
        xeddsa.verify(ours.public, ours.public.to_bytes(), sig)
        KeyPair.generate(rng)  # base key
        KeyPair.generate(rng)  # first sending ratchet key
        _, kem_ct = kem.encapsulate(kem_pair.public)
        for _ in range(5):  # initiator: 4 PQXDH DH + 1 ratchet DH
            dh.agree(ours.private, theirs.public)
        dh.is_canonical(theirs.public)
        kem_pair.decapsulate(kem_ct)
        for _ in range(5):  # responder: 4 PQXDH DH + 1 ratchet DH
            dh.agree(ours.private, theirs.public)
        KeyPair.generate(rng)  # responder's new ratchet key
    setup = (time.perf_counter() - t0) / k * 1e6
    return {"one_direction_us": message, "ping_pong_us": message + ratchet, "setup_us": setup}


def sotto_in_process(source: pathlib.Path, n: int, setups: int, *, compiled: bool) -> dict[str, float]:
    """:func:`sotto_run` in a fresh process that imports Sotto from ``source`` (a ``src`` directory)."""
    proc = subprocess.run(
        [sys.executable, str(HERE / "protocol.py"), "--sotto-side", "--n", str(n), "--setups", str(setups)],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(source)},
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result.pop("compiled") != compiled:
        raise RuntimeError(f"{source} did not give the {'compiled' if compiled else 'plain'} build")
    return {k: float(v) for k, v in result.items()}


def _sotto_side(n: int, setups: int) -> None:
    figures: dict[str, object] = dict(sotto_run(n, setups))
    figures["compiled"] = session.__file__ is not None and not session.__file__.endswith(".py")
    print(json.dumps(figures))


# ------------------------------------------------------------------------------ libsignal (Node)
def libsignal_run(n: int, setups: int) -> dict[str, float]:
    script = HERE / "libsignal_bench.mjs"
    out: dict[str, float] = {}
    for mode, key in (("one-direction", "one_direction_us"), ("ping-pong", "ping_pong_us")):
        proc = subprocess.run(
            ["node", str(script), "--n", str(n), "--setups", str(setups), "--mode", mode, "--json"],
            capture_output=True,
            text=True,
            check=True,
            timeout=900,
        )
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        out[key] = float(result["per_message_us"])
        out.setdefault("setup_us", float(result["setup_us"]))
    return out


# ------------------------------------------------------------------------------ report
def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _compiled_source(pure_only: bool) -> pathlib.Path | None:
    """The compiled build's ``src`` (built if needed), or None with the reason on stderr."""
    if pure_only:
        return None
    try:
        return compiled.build()
    except compiled.CompileUnavailableError as exc:
        print(f"no compiled build ({exc}); judging the plain-Python side", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000, help="messages per stream (default 20000)")
    parser.add_argument("--setups", type=int, default=50, help="fresh sessions timed for setup (default 50)")
    parser.add_argument("--runs", type=int, default=5, help="runs per side; medians are reported (default 5)")
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures here")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--pure-only", action="store_true", help="skip the compiled build")
    parser.add_argument("--sotto-side", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sotto_side:  # the child process of sotto_in_process
        _sotto_side(args.n, args.setups)
        return 0

    compiled_src = _compiled_source(args.pure_only)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {BENCH_CORE})  # children inherit the pin: every side on one core, in turn
    runners: dict[str, Callable[[], dict[str, float]]] = {}
    if compiled_src is not None:
        runners["sotto"] = lambda: sotto_in_process(compiled_src, args.n, args.setups, compiled=True)
    plain_src = HERE.parent / "src"
    runners["sotto (plain)"] = lambda: sotto_in_process(plain_src, args.n, args.setups, compiled=False)
    runners["libsignal"] = lambda: libsignal_run(args.n, args.setups)
    runners["floor"] = lambda: floor_run(args.n)
    judged = "sotto" if compiled_src is not None else "sotto (plain)"
    sides: dict[str, list[dict[str, float]]] = {side: [] for side in runners}
    interference: list[Interference] = []
    for run in range(1, args.runs + 1):
        for side, fn in runners.items():
            figures, found = measure_with_interference(fn)
            sides[side].append(figures)
            interference.append(found)
            shown = ", ".join(f"{k} {v:,.1f}" for k, v in figures.items())
            print(f"run {run} {side:13s} {shown}  ({found})", file=sys.stderr)

    max_steal = max(i.steal for i in interference)
    max_other = max(i.other_load for i in interference)

    print(
        f"\nSotto protocol benchmark: n={args.n} messages of {len(PLAINTEXT)} B, {args.setups} setups, "
        f"median of {args.runs} runs, max steal {max_steal:.2%}, max other load {max_other:.1%}"
    )
    build = "compiled core (mypyc)" if compiled_src is not None else "plain Python (no compiled build)"
    print(f"judged: Sotto with its {build}")
    header = ("figure", "Sotto", "plain", "libsignal", "floor", "speedup", "target")
    print(f"{header[0]:18s}" + "".join(f"{h:>11s}" for h in header[1:]) + "  verdict")
    ok = True
    report: dict[str, dict[str, float]] = {}
    for key, label in LABELS.items():
        ours, plain, theirs, floor = (
            _median(sides[s], key) for s in (judged, "sotto (plain)", "libsignal", "floor")
        )
        speedup = theirs / ours
        passed = ours <= TARGETS[key] and speedup >= MIN_SPEEDUP.get(key, 0.0)
        ok &= passed
        report[key] = {"sotto": ours, "plain": plain, "libsignal": theirs, "floor": floor, "speedup": speedup}
        cells = "".join(f"{v:11,.1f}" for v in (ours, plain, theirs, floor))
        cells += f"{speedup:10.1f}x{TARGETS[key]:11,.0f}"
        print(f"{label:18s}{cells}  {'ok' if passed else 'MISSED'}")
    print("targets: " + ", ".join(f"{LABELS[k]} ≤ {v:,.0f}" for k, v in TARGETS.items()))
    print(
        "         "
        + ", ".join(f"{LABELS[k]} ≥ {v:.0f}× faster than libsignal" for k, v in MIN_SPEEDUP.items())
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "n": args.n,
                    "setups": args.setups,
                    "runs": args.runs,
                    "judged": judged,
                    "max_steal": max_steal,
                    "max_other_load": max_other,
                    "figures": report,
                    "raw": sides,
                },
                indent=2,
            )
        )
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
