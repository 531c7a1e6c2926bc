"""The README's main command: a real relay, three real clients, and a look at what the relay kept.

``make demo`` (or ``python -m sotto.demo``) starts ``python -m sotto.server`` on 127.0.0.1 with
SQLite in a temporary directory, creates Alice, Bob and Carol with the SDK (each with an
encrypted store), connects them by invite links, and has them exchange 1:1 messages with typing
and receipts, talk in a group, compare safety numbers and leave a message for someone offline.
Then it prints each person's export of what the relay holds about them, every table of the
relay's database, and the result of a byte search of the relay's data directory and log for
every text sent, every account id in a place that would name a sender, and the client address:

    plaintexts found in server data: 0, sender ids found: 0, client IPs found: 0

Everything lives in a temporary directory that is removed at the end, also after a failure or
Ctrl-C; the relay process is always stopped.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape

from sotto.demo import evidence, show
from sotto.demo.relay import HOST, RelayProcess
from sotto.demo.story import Story, epilogue, tell

CHECK_LINE = "plaintexts found in server data: {p}, sender ids found: {s}, client IPs found: {i}"


@dataclass(frozen=True, slots=True)
class Result:
    plaintexts: int
    sender_ids: int
    client_ips: int
    seconds: float

    @property
    def clean(self) -> bool:
        return self.plaintexts == self.sender_ids == self.client_ips == 0


def run(workdir: Path | None = None) -> Result:
    """Run the whole demo in ``workdir`` (a new temporary directory by default, removed after)."""
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="sotto-demo-", dir=workdir))
    try:
        data, log = root / "relay-data", root / "relay.log"
        with RelayProcess(data, log) as relay:
            show.section(1, "A relay on the embedded default")
            url = relay.start()
            show.say(f"  python -m sotto.server on {url}, SQLite in {data}")
            show.note("  No access log, no proxy headers trusted; times kept as day numbers.")
            story = Story(url, root / "people")
            live_files, live_tables = asyncio.run(_conversation(story, data / evidence.DB_FILE, data))
            show.section(11, "The relay stops")
            relay.stop()
            stopped = b"event relay stopped" in log.read_bytes()
            show.say(f"  SIGTERM: {'stopped cleanly' if stopped else '[red]no clean stop in its log[/]'}.")
            show.note("  Closing the database checkpointed the write-ahead log into relay.db. Its whole log:")
            for line in log.read_text(errors="replace").splitlines():
                show.say(f"  [dim]│[/] {escape(line)}")
        findings = _search(story, data, log, live_files, live_tables)
        return _conclude(findings, story, time.monotonic() - started)
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def _conversation(
    story: Story, db: Path, data: Path
) -> tuple[dict[str, bytes], list[evidence.TableDump]]:
    try:
        await tell(story)
        show.section(9, "Every table in the relay's database, read with sqlite3 (read-only)")
        tables = evidence.dump_tables(db)
        for dump in tables:
            show.table_dump(dump)
        show.note(
            "  No table has a sender column, and nothing links a mailbox to an account. A waiting"
            " envelope (Carol's message is one) is a mailbox, a per-mailbox sequence number, a message"
            " id, a day and 1,024 opaque bytes."
        )
        live_files = evidence.read_files(data)
        show.section(10, "Carol comes back")
        await epilogue(story)
        show.note("  Delivered after she acknowledged it, then deleted from the relay.")
        return live_files, tables
    finally:
        await story.close()


def _search(
    story: Story, data: Path, log: Path, live_files: dict[str, bytes], live_tables: list[evidence.TableDump]
) -> evidence.Findings:
    plain = evidence.plaintext_needles(story.texts)
    senders = evidence.sender_needles(story.account_ids.values())
    ips = evidence.ip_needles([HOST])
    db = data / evidence.DB_FILE
    final_files = evidence.read_files(data)
    logs = {"relay.log": log.read_bytes()}
    return evidence.merge(
        # While the relay ran: the database, its WAL and shared memory as they were on disk. Account
        # ids are looked for row by row here, not in the raw pages: a WAL frame can be an old image of
        # a page that belongs to another table by now, so pages are attributed after the stop.
        evidence.search(live_files, plain + ips, label="running: "),
        evidence.search_rows(live_tables, senders),
        # After it stopped: every file, with account ids attributed to the tables they sit in.
        evidence.search(
            final_files, plain + ips + senders, label="stopped: ", pages=evidence.page_owners(db)
        ),
        evidence.search_rows(evidence.dump_tables(db), senders),
        evidence.search(logs, plain + ips + senders),
    )


def _conclude(findings: evidence.Findings, story: Story, seconds: float) -> Result:
    show.section(12, "What the relay's files contain")
    show.say(
        f"  looked for {len(set(story.texts))} texts sent (UTF-8, UTF-16),"
        f" {len(story.account_ids)} account ids (raw, hex, base64url, UUID) and {HOST}"
        " (text, decimal, IPv4-mapped, UTF-16; packed or as an integer in any table cell)"
    )
    for name, size in findings.searched.items():
        show.say(f"  searched {name} ({size:,} bytes)")
    show.say("  and every cell of every table, while the relay ran and after it stopped")
    result = Result(findings.count("plaintext"), findings.count("sender"), findings.count("ip"), seconds)
    tables = ", ".join(findings.allowed_tables()) or "none"
    show.say(
        f"  account ids: {findings.allowed('sender')} occurrences, all in their own account's rows"
        f" (tables {tables}): the relay knows an account exists, not who writes to whom"
    )
    for hit in findings.hits:
        if not hit.allowed:
            show.say(f"  [red]found {hit.needle.kind} {hit.needle.label!r} in {hit.where}[/]")
    line = CHECK_LINE.format(p=result.plaintexts, s=result.sender_ids, i=result.client_ips)
    show.console.print()
    show.console.print(f"[bold {'green' if result.clean else 'red'}]{line}[/]")
    show.note(f"  (demo finished in {seconds:.1f} s; temporary files removed)")
    return result


def main() -> int:
    try:
        result = run()
    except KeyboardInterrupt:
        show.console.print("\n[yellow]Interrupted: the relay was stopped and the temporary files removed.[/]")
        return 130
    except Exception as error:
        show.console.print(f"\n[red]The demo failed: {error}[/]")
        show.note("The relay was stopped and the temporary files removed.")
        return 1
    return 0 if result.clean else 1


if __name__ == "__main__":
    sys.exit(main())
