"""Render a benchmark result: ``leakage.json`` (everything), ``leakage.md`` (tables), and
``accuracy.png`` (fraction of targets identified against messages observed, tap view)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sotto.audit.leakage.chart import COLOR_NAMES, PALETTE, accuracy_chart

GOAL_TOP1_OVER_CHANCE = 2.0
GOAL_MESSAGES = 1_000


def aggregate(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Held-out results per design, averaged over seeds (messages-to-identify pooled)."""
    by_design: dict[str, list[dict[str, Any]]] = {}
    for item in result["held_out"]:
        by_design.setdefault(item["design"], []).append(item)
    out: dict[str, dict[str, Any]] = {}
    for name, items in by_design.items():
        out[name] = _mean_tree(items) if len(items) > 1 else items[0]
    return out


def _mean_tree(items: list[Any]) -> Any:
    first = items[0]
    if isinstance(first, dict):
        return {k: _mean_tree([i[k] for i in items]) for k in first}
    if isinstance(first, bool) or first is None or isinstance(first, str):
        return first
    if isinstance(first, int | float):
        values = [i for i in items if i is not None]
        return round(sum(values) / len(values), 4) if values else None
    return first


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value)}"
    return str(value)


def _mti(edges: dict[str, Any]) -> str:
    budget = edges.get("mti_budget", GOAL_MESSAGES)

    def one(key: str) -> str:
        v = edges.get(key)
        return f"> {budget}" if v is None else _fmt(v, 0)

    return f"{one('mti_median')} / {one('mti_p75')} / {one('mti_p90')}"


def _pseudonym_ratio(edges: dict[str, Any]) -> str:
    chance = edges.get("pseudonym_chance_top1")
    return f"{_fmt(edges['top1'] / chance, 1)}×" if chance else "—"


def goal_check(design: dict[str, Any], view: str) -> dict[str, Any]:
    edges = design[view]["edges"]
    # Chance is the larger of two no-information guesses: a uniformly random user, and the owner
    # of a random pseudonym (which the generous scoring makes available; it favours hubs).
    chance = max(edges["chance_top1"], edges.get("pseudonym_chance_top1") or 0.0)
    ratio = edges["top1"] / chance if chance else None
    within = edges.get("mti_within_budget")
    median = edges.get("mti_median")
    messages_ok = median is None and edges.get("mti_budget", 0) >= GOAL_MESSAGES
    return {
        "top1_over_chance": round(edges["top1"] / edges["chance_top1"], 2) if edges["chance_top1"] else None,
        "top1_over_baseline": None if ratio is None else round(ratio, 2),
        "top1_ok": ratio is not None and ratio <= GOAL_TOP1_OVER_CHANCE,
        "median_messages": median,
        "identified_within_budget": within,
        "messages_ok": messages_ok,
        "met": bool(ratio is not None and ratio <= GOAL_TOP1_OVER_CHANCE and messages_ok),
    }


def calibration(result: dict[str, Any], designs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    wa, sealed = designs.get("whatsapp-like"), designs.get("sealed-immediate")
    if wa is not None:
        recall = wa["dump"]["direct_edge_recall"]
        checks.append(
            {
                "id": "C1",
                "check": "WhatsApp-like dump: every pair that exchanged a text is read directly",
                "expected": "recall = 1",
                "measured": recall,
                "ok": recall == 1.0,
            }
        )
    for toy in result["toys"]["intersection"]:
        median, bound = toy["median_epochs"], toy["bound"]
        checks.append(
            {
                "id": "C2",
                "check": f"intersection toy, N = {toy['users']:,}, p = {toy['p']}",
                "expected": f"ln N / ln(1/p) = {bound} (+0..2)",
                "measured": median,
                "ok": median is not None and int(bound) <= median <= bound + 2,
            }
        )
    if sealed is not None:
        tap = sealed["tap"]["edges"]
        median = tap["mti_median"]
        checks.append(
            {
                "id": "C3",
                "check": "sealed sender + immediate receipts, tap: messages to identify (Martiny, NDSS 2021)",
                "expected": "median ≈ 5 (3–8), top-1 ≈ 1",
                "measured": f"median {_fmt(median)}, top-1 {_fmt(tap['top1'])}",
                "ok": median is not None and 3 <= median <= 8 and tap["top1"] >= 0.9,
            }
        )
        dump = sealed["dump"]["edges"]
        checks.append(
            {
                "id": "C4",
                "check": "sealed sender + immediate receipts, dump: no edges beyond chance",
                "expected": "top-1 ≤ chance + 2 pp",
                "measured": f"top-1 {_fmt(dump['top1'])}, chance {_fmt(dump['chance_top1'], 4)}",
                "ok": dump["top1"] <= dump["chance_top1"] + 0.02,
            }
        )
    for toy in result["toys"]["sda"]:
        mean, bound = toy["mean_rounds"], toy["bound"]
        checks.append(
            {
                "id": "C5",
                "check": f"threshold-mix toy, N = {toy['users']:,}, b = {toy['batch']}, m = {toy['friends']}",
                "expected": f"§2.10 bound {bound} rounds (±30%)",
                "measured": mean,
                "ok": mean is not None and 0.7 * bound <= mean <= 1.3 * bound,
            }
        )
    return checks


def markdown(result: dict[str, Any]) -> str:
    designs = aggregate(result)
    cfg, names = result["config"], list(designs)
    labels = {n: result["designs"][n]["label"] for n in names}
    pop = next(iter(designs.values()))["population"] if designs else {}
    lines = [
        "# Metadata leakage: what the relay could infer",
        "",
        f"Population: {pop.get('users', 0):,} users, {pop.get('edges', 0):,} contact edges, "
        f"{_fmt(pop.get('days'))} simulated days, {pop.get('texts', 0):,} texts and "
        f"{pop.get('typing', 0):,} typing indicators (receipts and rotation notices per design). "
        f"Held-out seeds {', '.join(str(s) for s in cfg['eval_seeds'])}; disclosure windows chosen on "
        f"training seed {cfg['train_seed']} ({_fmt(cfg['train_days'] or cfg['days'])} days) from "
        f"{', '.join(_fmt(w) for w in cfg['windows'])} s. {cfg['targets']} targets per design; "
        f"messages-to-identify budget {cfg['budget']:,}. Storage: {cfg['storage']}. "
        f"Run time {result['machine']['wall_s']:,.0f} s on {result['machine']['cpus']} CPUs, "
        f"peak RSS {result['machine']['max_rss_mib']:,.0f} MiB.",
        "",
        "Two views, never blended: the **tap** is every request the live relay observed (per "
        "connection: which mailboxes it drains, when, envelope sizes; sends and the connection "
        "carrying them); the **dump** is every row the relay stored and every log line it wrote, "
        "copied at each simulated midnight.",
        "",
        "## Goal for Sotto's default",
        "",
        f"Top-1 edge accuracy ≤ {GOAL_TOP1_OVER_CHANCE:g}× chance and more than {GOAL_MESSAGES:,} "
        "messages to identify a correspondent. Chance is the better of two guesses made without "
        "looking at traffic: a random user, or the owner of a random pseudonym (mailbox or cluster; "
        "scoring reveals owners, and well-connected users hold more of them).",
        "",
        "| design | view | top-1 / random user | top-1 / random pseudonym | median messages | "
        "identified within budget | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        if not name.startswith("sotto"):
            continue
        for view in ("dump", "tap"):
            g = goal_check(designs[name], view)
            lines.append(
                f"| {labels[name]} | {view} | {_fmt(g['top1_over_chance'], 1)}× | "
                f"{_pseudonym_ratio(designs[name][view]['edges'])} | "
                f"{'> budget' if g['median_messages'] is None else _fmt(g['median_messages'], 0)} | "
                f"{_fmt(g['identified_within_budget'])} | {'met' if g['met'] else 'not met'} |"
            )
    lines += [
        "",
        "## Who talks to whom",
        "",
        "Top-1: the adversary's first guess is a true contact. MAP: mean average precision of its "
        "ranking. Messages to identify: how many texts from a target's strongest correspondent the "
        "relay must see before that correspondent is its unique top suspect (median / p75 / p90 "
        "over targets; '> budget' when fewer than that share were identified). Direct: share of "
        "targets whose top suspect was read, not inferred.",
        "",
        "| design | view | window | top-1 | chance | pseudonym chance | MAP | recall@deg | direct | "
        "messages to identify | identified |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        d = designs[name]
        for view in ("dump", "tap"):
            e = d[view]["edges"]
            window = f"{_fmt(d['window'])} s" if view == "tap" else "day"
            lines.append(
                f"| {labels[name]} | {view} | {window} | {_fmt(e['top1'])} | {_fmt(e['chance_top1'], 4)} | "
                f"{_fmt(e.get('pseudonym_chance_top1'), 4)} | "
                f"{_fmt(e['map'])} | {_fmt(e['recall_at_degree'])} | {_fmt(e['direct_fraction'], 2)} | "
                f"{_mti(e)} | {_fmt(e['mti_within_budget'])} |"
            )
    lines += [
        "",
        "## When users are online, and what sizes say",
        "",
        "Presence: AUC of the adversary's per-15-minute online score against the truth, and the "
        "information its on/off guess carries (bits per bin; the truth itself carries the last "
        "column). Sizes: mutual information between an envelope's observed size and its kind "
        "(text, receipt, typing, rotation notice), the accuracy of guessing the kind from the size "
        "against always guessing the commonest kind, and how well sizes pick out receipts (AUC).",
        "",
        "| design | presence AUC tap | bits tap | presence AUC dump | bits dump | truth bits | "
        "size MI tap (bits) | kind accuracy / majority | receipt AUC | size MI dump |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        d = designs[name]
        pt, pd, st, sd = d["tap"]["presence"], d["dump"]["presence"], d["tap"]["sizes"], d["dump"]["sizes"]
        lines.append(
            f"| {labels[name]} | {_fmt(pt['auc'])} | {_fmt(pt['bits_per_bin'])} | {_fmt(pd['auc'])} | "
            f"{_fmt(pd['bits_per_bin'])} | {_fmt(pt['truth_bits_per_bin'])} | {_fmt(st['mi_bits'])} | "
            f"{_fmt(st['accuracy'])} / {_fmt(st['majority'])} | {_fmt(st['receipt_auc'])} | "
            f"{_fmt(sd['mi_bits'])} ({sd['envelopes']} pending) |"
        )
    lines += [
        "",
        "## Identifier linking (tap)",
        "",
        "Pairwise precision and recall of 'these two mailboxes have one owner', and the share of "
        "send connections the tap ties to a drain connection (and how many of those ties are right).",
        "",
        "| design | method | mailboxes | clusters | pair precision | pair recall | send connections tied | "
        "ties correct |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        lk = designs[name]["tap"]["linking"]
        lines.append(
            f"| {labels[name]} | {lk['method']} | {_fmt(lk['mailboxes'])} | {_fmt(lk['clusters'])} | "
            f"{_fmt(lk['pair_precision'])} | {_fmt(lk['pair_recall'])} | {_fmt(lk['send_tied'])} | "
            f"{_fmt(lk['send_tied_correct'])} |"
        )
    lines += [
        "",
        "## Costs",
        "",
        "| design | text latency median / p95 (s) | envelopes / user / day | KiB / user / day | "
        "bytes ÷ unpadded | drain connections / user / day | send connections / user / day |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        c = designs[name]["costs"]
        lines.append(
            f"| {labels[name]} | {_fmt(c['text_latency_median_s'], 2)} / "
            f"{_fmt(c['text_latency_p95_s'], 1)} | "
            f"{_fmt(c['envelopes_per_user_day'], 1)} | {_fmt(c['kib_per_user_day'], 1)} | "
            f"{_fmt(c['padding_overhead'], 2)} | {_fmt(c['drain_connections_per_user_day'], 1)} | "
            f"{_fmt(c['send_connections_per_user_day'], 1)} |"
        )
    lines += ["", "## Calibration", "", "| # | check | expected | measured | ok |", "|---|---|---|---|---|"]
    for check in calibration(result, designs):
        lines.append(
            f"| {check['id']} | {check['check']} | {check['expected']} | {_fmt(check['measured'])} | "
            f"{'yes' if check['ok'] else 'NO'} |"
        )
    lines += [
        "",
        "## Disclosure window (training seed)",
        "",
        "| design | " + " | ".join(f"{_fmt(w)} s" for w in cfg["windows"]) + " | chosen |",
        "|---|" + "---|" * (len(cfg["windows"]) + 1),
    ]
    for name in names:
        t = result["training"][name]
        cells = " | ".join(_fmt(t["sweep"][str(float(w))]["top1"]) for w in cfg["windows"])
        lines.append(f"| {labels[name]} | {cells} | {_fmt(t['window'])} s |")
    lines += [
        "",
        "## Chart",
        "",
        "`accuracy.png`: fraction of targets whose strongest correspondent is identified (y) "
        "against texts observed from that correspondent (x, log scale), tap view. Key:",
        "",
    ]
    for n, name in enumerate(names):
        lines.append(f"{n + 1}. {COLOR_NAMES[n % len(PALETTE)]}: {labels[name]}")
    lines.append("")
    return "\n".join(lines)


def write(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    designs = aggregate(result)
    series = [
        (result["designs"][name]["label"], {int(k): v for k, v in d["tap"]["curve"].items()})
        for name, d in designs.items()
    ]
    paths = {
        "json": out_dir / "leakage.json",
        "markdown": out_dir / "leakage.md",
        "chart": out_dir / "accuracy.png",
    }
    summary = dict(result)
    summary["summary"] = {
        name: {
            "tap": d["tap"]["edges"],
            "dump": d["dump"]["edges"],
            "goal_tap": goal_check(d, "tap"),
            "goal_dump": goal_check(d, "dump"),
        }
        for name, d in designs.items()
    }
    summary["calibration"] = calibration(result, designs)
    paths["json"].write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    paths["markdown"].write_text(markdown(result), encoding="utf-8")
    paths["chart"].write_bytes(accuracy_chart(series, max_messages=max(10, result["config"]["budget"])))
    return paths
