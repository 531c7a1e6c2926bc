"""Lint: no ``==`` / ``!=`` on MACs, tags, digests, secrets or keys anywhere under src/sotto.

Python's ``==`` on bytes stops at the first differing byte, so comparing a received MAC with the
expected one leaks how much of it was right. A timing test cannot see that at 32 bytes, so the
rule is enforced on the source instead: compare such values with ``sotto.crypto.kdf.bytes_equal``.

An operand counts as sensitive when it is a name or attribute (or a slice of one) whose
identifier has a word ``mac``, ``tag``, ``digest``, ``secret`` or ``key`` (``their_mac``,
``chainKey``, ``hmac``, ``prekey`` ...), unless its last word says it is a number or a label
(``key_id``, ``tag_length``, ``key_type`` ...). Comparing with an int, None or bool literal, or
with ``len(...)``, is allowed. The few deliberate exceptions are listed in :data:`ALLOWED`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "sotto"

SENSITIVE = re.compile(r"mac|tag|digest|secret|key", re.IGNORECASE)
NEUTRAL_LAST_WORDS = {
    "id", "ids", "type", "types", "index", "count", "len", "length", "size", "version", "kind",
    "name", "number", "bits", "offset", "limit", "label", "flag", "flags", "format", "prefix",
}  # fmt: skip

ALLOWED: dict[str, set[str]] = {
    # PublicKey objects: public values, and PublicKey.__eq__ compares in constant time anyway.
    "protocol/ratchet/state.py": {"ratchet_key", "their_ratchet_key"},
    "protocol/record.py": {"alice_base_key", "base_key"},
    "protocol/sealed_sender/certificate.py": {"key"},
    "store/memory.py": {"identity_key"},
    "store/sqlite/keys.py": {"identity_key"},
    # An event's (kind, contact) bookkeeping key, and a message type constant: no secrets.
    "client/flows/reporting.py": {"key", "_key_of"},
    "protocol/store/calls.py": {"PREKEY"},
    # The type tag of a stored value's encoding: a format byte, not a secret.
    "store/codec.py": {"tag"},
    # A pseudonym of the operator's view compared with a candidate, and a header name looked up:
    # names, not secrets.
    "audit/leakage/attacks/view.py": {"key"},
    # A pseudonym of the operator's view (a mailbox or connection label) against another.
    "audit/leakage/attacks/padding.py": {"key"},
    # A conversation's key in the chat app: the contact's or group's name, shown on screen.
    "tui/app.py": {"key", "_typing_to"},
    "tui/conversations.py": {"key", "open_key"},
    "audit/sim/network.py": {"key"},
    # The route of the public key configuration (a path constant).
    "forwarder/app.py": {"KEYS_PATH"},
    "server/gateway.py": {"KEYS_PATH"},
    # Protobuf field tags of a SignalMessage (wire-format constants, public).
    "protocol/messages.py": {
        "_COUNTER_TAG",
        "_PREVIOUS_COUNTER_TAG",
        "_CIPHERTEXT_TAG",
        "_PQ_RATCHET_TAG",
        "_ADDRESSES_TAG",
    },
}
"""Path under src/sotto -> identifiers that may be compared with ``==`` in that file."""


def _words(identifier: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", identifier)
    return [w.lower() for w in spaced.split("_") if w]


def _identifier(node: ast.expr) -> str | None:
    while isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _sensitive(identifier: str) -> bool:
    words = _words(identifier)
    if not words or words[-1] in NEUTRAL_LAST_WORDS:
        return False
    return any(SENSITIVE.search(w) for w in words)


def _harmless(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, int)):
        return True
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len"


def violations(source: str, relative: str) -> list[str]:
    found: list[str] = []
    allowed = ALLOWED.get(relative, set())
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for op, left, right in zip(node.ops, operands[:-1], operands[1:], strict=True):
            if not isinstance(op, (ast.Eq, ast.NotEq)) or _harmless(left) or _harmless(right):
                continue
            names = [n for n in (_identifier(left), _identifier(right)) if n is not None]
            hits = [n for n in names if _sensitive(n) and n not in allowed]
            if hits:
                found.append(f"src/sotto/{relative}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_variable_time_comparison_of_secrets() -> None:
    files = sorted(SRC.rglob("*.py"))
    assert files, f"no sources under {SRC}"
    found: list[str] = []
    for path in files:
        found += violations(path.read_text(encoding="utf-8"), path.relative_to(SRC).as_posix())
    assert not found, (
        "== / != on a MAC, tag, digest, secret or key leaks timing; compare with "
        "sotto.crypto.kdf.bytes_equal(a, b) instead (or, for a public value, add the identifier to "
        "ALLOWED in tests/test_secret_compare_lint.py with a reason):\n  " + "\n  ".join(found)
    )


def test_the_lint_catches_what_it_should() -> None:
    bad = [
        "ok = their_mac == expected",
        "ok = mac[:8] != computed",
        "ok = self.chain_key == other",
        "ok = msg.tag == t",
        "ok = digest == d",
        "ok = sharedSecret == s",
        "ok = a == b.macKey",
    ]
    for line in bad:
        assert violations(line, "x.py"), line
    good = [
        "ok = key_id == 5",
        "ok = mac is None",
        "ok = their_mac == None",
        "ok = len(mac) == 8",
        "ok = mac_length == 8",
        "ok = signed_pre_key_id == other.signed_pre_key_id",
        "ok = key_type == KeyType.DJB",
        "ok = bytes_equal(mac, expected)",
        "ok = version == 4",
        "ok = counter == 3",
    ]
    for line in good:
        assert not violations(line, "x.py"), line
    assert not violations("ok = state.alice_base_key == base_key", "protocol/record.py")
    assert violations("ok = state.alice_base_key == base_key", "protocol/other.py")
    assert violations("ok = state.alice_base_key == chain_key", "protocol/record.py")
