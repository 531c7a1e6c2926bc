"""What attachments cost: a 100 MiB file encrypted and decrypted, speed and memory.

    python bench/attachments.py            # 100 MiB, 3 runs of each (about a minute)
    python bench/attachments.py --quick    # 8 MiB, 3 runs

Each run is a fresh process, so the figures do not depend on what an earlier run left in memory.
Per run it measures:

* crypto: the plaintext fed through :class:`AttachmentEncryptor`, and the blob through both
  passes of :class:`AttachmentDecryptor`, read from the page cache into one reused buffer, the
  output discarded: MiB of plaintext per second;
* file: :func:`encrypt_file` and :func:`decrypt_file` end to end (reads, writes, fsync; the
  files are in the page cache, as a just-received blob would be);
* RSS growth: the process's peak resident memory during the operation above what it held just
  before (the kernel's high-water mark, reset through ``/proc/self/clear_refs``).

The baseline, measured in the same process: AES-256-CBC alone and SHA-256 alone over the same
bytes with the same library (the floor of what the format's three passes can cost). Medians of
the runs are printed, as MiB per second of wall time and per second of the process's CPU time
(on a shared, loaded machine the wall figure measures the machine; the target is read on the
CPU figure), with the load average before and after. Targets: ≥ 150 MiB/s crypto, ≤ 16 MiB RSS
growth.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sotto.client.attachment_files import decrypt_file, encrypt_file
from sotto.protocol.attachment import CHUNK_SIZE, AttachmentDecryptor, AttachmentEncryptor

MIB = 1024 * 1024
TARGET_MIB_S = 150.0
TARGET_RSS_MIB = 16.0


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> int:
    """Reset the peak RSS to the current RSS and return it."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


def _measured(work: object) -> dict[str, float]:
    assert callable(work)
    before = _reset_peak()
    started, cpu = time.perf_counter(), time.process_time()
    work()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "rss_growth": (_status("VmHWM") - before) / MIB}


def _read(path: Path, buffer: bytearray) -> Iterator[memoryview]:
    view = memoryview(buffer)
    with open(path, "rb") as f:
        while n := f.readinto(buffer):
            yield view[:n]


def child(directory: Path, size: int) -> dict[str, dict[str, float]]:
    """One run of every measurement; the plaintext file is ``directory / 'plain'``."""
    buffer = bytearray(CHUNK_SIZE)
    out: dict[str, dict[str, float]] = {}
    state: dict[str, bytes] = {}

    def file_encrypt() -> None:
        sealed = encrypt_file(directory / "plain", directory / "blob")
        state["key"], state["digest"] = sealed.key, sealed.digest

    def crypto_encrypt() -> None:
        _, encryptor = AttachmentEncryptor.start(size, os.urandom)
        for chunk in _read(directory / "plain", buffer):
            encryptor.update(chunk)
        for _ in encryptor.finalize():
            pass

    def crypto_decrypt() -> None:
        decryptor = AttachmentDecryptor(state["key"], state["digest"], size)
        for chunk in _read(directory / "blob", buffer):
            decryptor.verify_update(chunk)
        decryptor.verify_finalize()
        for chunk in _read(directory / "blob", buffer):
            decryptor.decrypt_update(chunk)
        decryptor.decrypt_finalize()

    def file_decrypt() -> None:
        decrypt_file(directory / "blob", state["key"], state["digest"], size, directory / "out")

    out["file_encrypt"] = _measured(file_encrypt)
    out["crypto_encrypt"] = _measured(crypto_encrypt)
    out["crypto_decrypt"] = _measured(crypto_decrypt)
    out["file_decrypt"] = _measured(file_decrypt)
    if (directory / "out").read_bytes() != (directory / "plain").read_bytes():
        raise SystemExit("the decrypted file differs from the original")
    for name in ("blob", "out"):
        (directory / name).unlink()
    return out


def baseline(size: int) -> dict[str, float]:
    """MiB/s of AES-256-CBC alone and SHA-256 alone, same library, same chunking."""
    view = memoryview(bytearray(os.urandom(CHUNK_SIZE)))
    rates = {}
    for name in ("aes_cbc_encrypt", "aes_cbc_decrypt", "sha256"):
        if name == "sha256":
            h = hashes.Hash(hashes.SHA256())
            update = h.update
        else:
            cipher = Cipher(algorithms.AES256(bytes(32)), modes.CBC(bytes(16)))
            context = cipher.encryptor() if name == "aes_cbc_encrypt" else cipher.decryptor()
            update = context.update  # type: ignore[assignment]
        started = time.process_time()
        left = size
        while left:
            n = min(left, CHUNK_SIZE)
            update(view[:n])
            left -= n
        rates[name] = size / MIB / (time.process_time() - started)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="8 MiB instead of 100 MiB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.size)))
        return
    size = (8 if args.quick else 100) * MIB
    load_before = os.getloadavg()
    runs: list[dict[str, dict[str, float]]] = []
    baselines: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="sotto-bench-attachments-") as tmp:
        directory = Path(tmp)
        with open(directory / "plain", "wb") as f:
            for _ in range(size // MIB):
                f.write(os.urandom(MIB))
        for _ in range(args.runs):
            result = subprocess.run(
                [sys.executable, __file__, "--child", str(directory), "--size", str(size)],
                check=True,
                capture_output=True,
                text=True,
            )
            runs.append(json.loads(result.stdout))
            baselines.append(baseline(size))
    load_after = os.getloadavg()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {size // MIB} MiB file, "
        f"{args.runs} runs (medians); load average before {load_before[0]:.2f} "
        f"and after {load_after[0]:.2f} (1 min)"
    )
    print(f"{'operation':<16} {'MiB/s wall':>10} {'MiB/s CPU':>10} {'RSS growth MiB':>15}  target (CPU)")
    verdicts = []
    for name in ("crypto_encrypt", "crypto_decrypt", "file_encrypt", "file_decrypt"):
        wall = size / MIB / statistics.median(r[name]["seconds"] for r in runs)
        cpu = size / MIB / statistics.median(r[name]["cpu"] for r in runs)
        growth = statistics.median(r[name]["rss_growth"] for r in runs)
        target = ""
        if name.startswith("crypto"):
            ok = cpu >= TARGET_MIB_S
            target = f">= {TARGET_MIB_S:.0f} MiB/s: {'met' if ok else 'MISSED'}"
            verdicts.append(ok)
        print(f"{name:<16} {wall:>10.1f} {cpu:>10.1f} {growth:>15.2f}  {target}")
    worst = max(r[n]["rss_growth"] for r in runs for n in r)
    ok = worst <= TARGET_RSS_MIB
    verdicts.append(ok)
    verdict = "met" if ok else "MISSED"
    print(f"largest RSS growth of any run: {worst:.2f} MiB (<= {TARGET_RSS_MIB:.0f}: {verdict})")
    print("baseline, same chunks, one primitive alone (MiB/s of CPU time):")
    for name in baselines[0]:
        print(f"  {name:<16} {statistics.median(b[name] for b in baselines):>8.1f}")
    print("all targets met" if all(verdicts) else "some targets MISSED")


if __name__ == "__main__":
    main()
