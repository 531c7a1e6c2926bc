"""The benchmark's report: one Markdown table of every design, each measured design's attack
table, the negative control, and the same as JSON; a chart of messages to identify.

:func:`markdown` and :func:`to_json` are pure; :func:`write` puts ``leakage.md``,
``leakage.json`` and ``accuracy.png`` in a directory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sotto.audit.leakage import chart
from sotto.audit.leakage.run import DesignResult


def _num(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def markdown(results: Sequence[DesignResult], *, title: str = "Metadata leakage", notes: str = "") -> str:
    """Every design side by side, then each measured design's detail (module docstring)."""
    lines = [f"# {title}", ""]
    if notes:
        lines += [notes, ""]
    lines += [
        "Measured designs ran real clients on the real relay; the attacks read only the view the "
        "relay recorded. Modelled designs are computed from the default study's truth under their "
        "stated model (`sotto.audit.leakage.modelled`), not measured.",
        "",
        "| design | how | people × days | best contact attack: top-1 | without source addresses "
        "| chance (people) "
        "| chance (mailboxes) | hours to identify, no message, no address (median; identified) "
        "| messages to identify (median; identified) | presence AUC: app use | device on "
        "| requests / person / day | kB / person / day | text latency median (p95), s | wall / CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        best = r.best()
        hidden = max(
            (row for row in r.rows if row.attack != "address"), key=lambda row: row.top1, default=None
        )
        silent = max(
            (row for row in r.rows if not row.needs_messages and not row.files and row.attack != "address"),
            key=lambda row: row.top1,
            default=None,
        )
        loud = r.best(needs_messages=True)
        hours = "–"
        if silent is not None:
            hours = f"{_num(silent.hours_median, 1)} ({silent.attack}); {_num(silent.identified)}"
        messages = "–"
        if loud is not None:
            messages = f"{_num(loud.messages_median, 0)} ({loud.attack}); {_num(loud.identified)}"
        lines.append(
            f"| {r.name} | {'measured' if r.measured else 'modelled, not measured'} "
            f"| {r.people} × {r.days:.1f} "
            f"| {_num(best.top1 if best else None)} ({best.attack if best else '–'}) "
            f"| {_num(hidden.top1 if hidden else None)} ({hidden.attack if hidden else '–'}) "
            f"| {_num(best.chance_people if best else None, 3)} "
            f"| {_num(best.chance_mailboxes if best else None, 3)} | {hours} | {messages} "
            f"| {_num(r.presence.get('app_use'))} | {_num(r.presence.get('device_on'))} "
            f"| {_num(r.requests_per_person_day, 0)} | {_num(r.kbytes_per_person_day, 0)} "
            f"| {_num(r.latency_median_s)} ({_num(r.latency_p95_s)}) "
            f"| {_num(r.wall_s, 0) if r.measured else '–'} / {_num(r.cpu_s, 0) if r.measured else '–'} |"
        )
    lines += [
        "",
        "Top-1: the share of a target's pseudonyms whose first candidate is a real contact, averaged "
        "over every person with a contact. Chance (people): a random other person; chance "
        "(mailboxes): the owner of a random mailbox. Best contact attack: the one with the highest "
        "top-1; without source addresses: the best of the others (what remains if the relay could "
        "not see addresses). Hours to identify: from a target's first contact to the first hour from "
        "which the attack's top-1 stays right, for the best attack that reads no delivery and no "
        "address. Messages to identify: texts the target sent and received until the top-1 stays "
        "right. Presence: AUC per 15-minute bin against the person's app use and against their "
        "device being on (0.5 is a coin). Requests: HTTP requests and WebSocket frames from clients "
        "(modelled: messages carried). Latency: from the relay taking a text to handing it to the "
        "recipient's device (the simulated network adds no delay).",
        "",
    ]
    for r in results:
        if not r.measured:
            continue
        lines += [f"## {r.name}: every attack", "", r.summary + ".", "", r.detail.rstrip(), ""]
        if r.rows:
            lines += ["| attack | messages to identify (median) | identified |", "|---|---|---|"]
            lines += [
                f"| {row.attack} | {_num(row.messages_median, 0)} | {_num(row.identified)} |"
                for row in r.rows
                if row.needs_messages
            ]
            lines.append("")
        lines += _files(r) + _sizes(r)
        if r.shuffled:
            lines += [
                "Negative control (the same view with its ids dealt out again between people): "
                + ", ".join(f"{name} {value:.2f}" for name, value in r.shuffled.items())
                + ".",
                "",
            ]
    return "\n".join(lines)


def _files(r: DesignResult) -> list[str]:
    """The attacks on the relay's files, and what the files held."""
    rows = [row for row in r.rows if row.files]
    if not rows:
        return []
    lines = [
        "The relay's files (SQLite, snapshots taken by the relay at "
        + ", ".join(f"{h:.1f}" for h in r.files.get("moments_h", []))
        + " hours):",
        "",
        "| attack on the files | contact top-1 | chance (people) | chance (mailboxes) | answered |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {row.attack} | {_num(row.top1)} | {_num(row.chance_people)} | {_num(row.chance_mailboxes)} "
        f"| {_num(row.answered)} |"
        for row in rows
    ]
    held = r.files
    if held:
        where = ", ".join(
            f"{k} {held['nonzero_bytes'].get(k, 0):,} of {v:,} bytes not zero"
            for k, v in sorted(held.get("remnant_bytes", {}).items())
        )
        lines += [
            "",
            f"Remnants over {held.get('snapshots', 0)} snapshots: "
            f"write-ahead log {held.get('wal_bytes', 0):,} bytes; "
            f"{where or 'none'}; ids of deleted mailboxes found: {held.get('deleted_mailboxes', 0)}; "
            f"acknowledged envelopes (of {held.get('acked_seen', 0)}) whose tag a remnant holds: "
            f"{held.get('acked_envelopes', 0)}.",
        ]
    return [*lines, ""]


def _sizes(r: DesignResult) -> list[str]:
    """Whether sizes tell kinds, and the backlogs polls drained."""
    lines = []
    sizes = r.sizes
    if sizes and sizes.get("envelopes"):
        classes = "; ".join(
            f"{kind}: "
            + ", ".join(f"{2 ** (int(c) - 1)}–{2 ** int(c) - 1} B × {n}" for c, n in counts.items())
            for kind, counts in sizes.get("classes", {}).items()
        )
        lines += [
            f"Sizes: the size class of a send tells its kind for {_num(sizes['accuracy'])} of "
            f"{sizes['envelopes']} sends (the commonest kind alone: {_num(sizes['majority'])}). "
            f"Request sizes by kind: {classes}.",
            "",
        ]
    b = r.backlogs
    if b:
        lines += [
            f"Backlogs: {b['drains']} reads handed out more than one envelope at once "
            f"({b['envelopes']} envelopes, at most {b['largest']} in one; {b['more']} answers said more "
            "was waiting).",
            "",
        ]
    return lines


def to_json(results: Sequence[DesignResult], **extra: Any) -> dict[str, Any]:
    return {"designs": [r.to_json() for r in results], **extra}


def write(
    results: Sequence[DesignResult],
    out: Path,
    *,
    title: str = "Metadata leakage",
    notes: str = "",
    **extra: Any,
) -> dict[str, Path]:
    """Write ``leakage.md``, ``leakage.json`` and ``accuracy.png`` to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "leakage.md", "json": out / "leakage.json", "chart": out / "accuracy.png"}
    paths["markdown"].write_text(markdown(results, title=title, notes=notes), encoding="utf-8")
    paths["json"].write_text(
        json.dumps(to_json(results, **extra), indent=1, sort_keys=True), encoding="utf-8"
    )
    series = [(r.name, dict(r.curve)) for r in results if r.curve]
    paths["chart"].write_bytes(chart.accuracy_chart(series))
    return paths


__all__ = ["markdown", "to_json", "write"]
