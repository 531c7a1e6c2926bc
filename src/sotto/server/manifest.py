"""Everything the relay writes, why, and for how long: the machine-readable twin of ``docs/data-held.md``.

``tests/server/test_manifest.py`` fails when the real SQLite schema has a table or column this
manifest does not list (or the other way round), when the document and this module disagree,
and when an export leaves out a listed column. ``GET /v1/manifest`` serves it as JSON, and the
exports (``GET /v1/export``, ``GET /v1/mailboxes/{id}/export``) use its table and column names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

ExportForm = Literal["value", "size"]
Scope = Literal["account", "mailbox"]

MANIFEST_VERSION = 2
"""2: no creation day on devices and mailboxes; access-token expiries and account creation days
in whole weeks."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: Literal["blob", "integer"]
    holds: str
    export: ExportForm = "value"
    """``size``: exports give the length in bytes, not the bytes (envelope payloads)."""


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    scope: Scope
    """Which export returns its rows: the account's (``/v1/export``) or a mailbox's."""
    why: str
    kept: str
    columns: tuple[Column, ...]

    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


@dataclass(frozen=True, slots=True)
class LogField:
    name: str
    holds: str


@dataclass(frozen=True, slots=True)
class File:
    name: str
    holds: str
    kept: str


TABLES: tuple[Table, ...] = (
    Table(
        "accounts",
        "account",
        "An account is what prekey bundles and usernames are attached to.",
        (
            "Until its owner deletes it (`DELETE /v1/accounts/me`, with its devices, prekeys and access "
            "tokens in the same transaction) or the operator does; there is no other expiry."
        ),
        (
            Column("account_id", "blob", "16 random bytes chosen by the server at creation."),
            Column(
                "identity_key", "blob", "The account's public identity key (33 bytes), served in bundles."
            ),
            Column(
                "username_hash",
                "blob",
                "HMAC-SHA256(server key, lowercased username), or null; never the name itself.",
            ),
            Column(
                "created_day",
                "integer",
                "First day of the week of creation (a multiple of 7 days since 1970-01-01 UTC), which "
                "`GET /v1/accounts/me` reports; the week, not the day.",
            ),
        ),
    ),
    Table(
        "devices",
        "account",
        "A device authenticates with its secret and publishes the prekeys others start sessions with.",
        "As long as the account.",
        (
            Column("account_id", "blob", "The account the device belongs to."),
            Column("device_id", "integer", "1 for the first device."),
            Column(
                "registration_id", "integer", "The device's libsignal registration id, served in bundles."
            ),
            Column("secret_hash", "blob", "SHA-256 of the device's 32-byte secret; the secret is not kept."),
            Column("signed_pre_key_id", "integer", "Id of the current signed EC prekey."),
            Column("signed_pre_key", "blob", "The current signed EC prekey (public, 33 bytes)."),
            Column("signed_pre_key_signature", "blob", "Its XEdDSA signature by the identity key."),
            Column("kyber_last_resort_id", "integer", "Id of the Kyber last-resort prekey."),
            Column("kyber_last_resort", "blob", "The Kyber last-resort prekey (public, 1569 bytes)."),
            Column("kyber_last_resort_signature", "blob", "Its signature by the identity key."),
            Column(
                "one_time_floor",
                "integer",
                "Highest one-time EC prekey id handed out, so a retried upload cannot put a used key back.",
            ),
            Column("kyber_floor", "integer", "The same for one-time Kyber prekeys."),
        ),
    ),
    Table(
        "one_time_pre_keys",
        "account",
        "One-time EC prekeys not yet handed out: each goes to exactly one bundle fetch.",
        "Until handed out (deleted in the same transaction) or the account is deleted.",
        (
            Column("account_id", "blob", "Owner account."),
            Column("device_id", "integer", "Owner device."),
            Column("key_id", "integer", "The prekey id chosen by the device."),
            Column("public_key", "blob", "The public prekey (33 bytes)."),
        ),
    ),
    Table(
        "kyber_pre_keys",
        "account",
        "One-time Kyber prekeys not yet handed out.",
        "Until handed out (deleted in the same transaction) or the account is deleted.",
        (
            Column("account_id", "blob", "Owner account."),
            Column("device_id", "integer", "Owner device."),
            Column("key_id", "integer", "The prekey id chosen by the device."),
            Column("public_key", "blob", "The public Kyber prekey (1569 bytes)."),
            Column("signature", "blob", "Its signature by the identity key."),
        ),
    ),
    Table(
        "access_tokens",
        "account",
        "Whoever holds an access token (from an invite) may fetch the account's prekey bundle.",
        "Until the owner deletes it or its expiry day, whichever comes first.",
        (
            Column(
                "token_hash",
                "blob",
                "SHA-256 of the account id and the SHA-256 of the 32-byte token, so the same token "
                "registered by another account is another row; the token is not kept.",
            ),
            Column("account_id", "blob", "The account whose bundle the token opens."),
            Column(
                "expires_day",
                "integer",
                "First day the token no longer works: the day the owner chose, rounded up to a whole "
                "number of weeks since day 0, so the tokens of one week and lifetime share it and it "
                "does not date the invite.",
            ),
        ),
    ),
    Table(
        "mailboxes",
        "mailbox",
        "A mailbox receives envelopes for its owner; it is anonymous: no account id is stored.",
        "Until deleted by its owner, or ttl_days (plus up to 6) after the owner last drained it.",
        (
            Column("mailbox_id", "blob", "16 random bytes chosen by the owner."),
            Column("auth_key", "blob", "The owner's Ed25519 public key for this mailbox only."),
            Column(
                "token_hash", "blob", "SHA-256 of the delivery token senders present; the token is not kept."
            ),
            Column("ttl_days", "integer", "Days of inactivity before the mailbox expires (1-90)."),
            Column(
                "expires_day",
                "integer",
                "First day the mailbox is gone: ttl_days to ttl_days + 6 after the owner last drained it "
                "(creating it counts as a drain). A drain moves it forward only in whole weeks, on a "
                "weekday fixed per mailbox, so it says the week of the last drain, not the day; no "
                "creation day is kept.",
            ),
        ),
    ),
    Table(
        "envelopes",
        "mailbox",
        "Envelopes wait here until the mailbox owner acknowledges them.",
        "Until acknowledged (deleted at once) or the envelope TTL (30 days by default) after receipt.",
        (
            Column(
                "mailbox_id", "blob", "The recipient mailbox (no sender is stored: there is none to store)."
            ),
            Column(
                "seq",
                "integer",
                "Order among the mailbox's pending envelopes (1 + the highest pending), not global.",
            ),
            Column(
                "id_tag",
                "blob",
                "16 bytes of SHA-256 over the mailbox id and the message id (16 random bytes chosen by "
                "the sender), to find the envelope for deduplication and acknowledgement; the id itself "
                "is only in `sealed`.",
            ),
            Column("received_day", "integer", "Day number of receipt, for the TTL."),
            Column("key_slot", "integer", "The row of `envelope_keys` holding this envelope's key."),
            Column(
                "sealed",
                "blob",
                "The message id and the sealed, padded ciphertext (256 to 65,536 bytes, a padding "
                "bucket), encrypted again (AES-256-CTR) under the envelope's own key, so that a copy "
                "SQLite leaves in a page is unreadable once the key is gone.",
                export="size",
            ),
        ),
    ),
    Table(
        "envelope_keys",
        "mailbox",
        "Each pending envelope's own key: deleting an envelope overwrites its key with zeros where it "
        "lies, which leaves every copy of the envelope unreadable.",
        "A key lives as long as its envelope; the slot (its row) stays, zeroed, for the next envelope.",
        (
            Column(
                "slot",
                "integer",
                "Row number, reused: each envelope takes a free slot at random. When none is free the "
                "table doubles with empty slots, so a number says roughly how many envelopes were "
                "pending at once, not when one arrived or which arrived after which.",
            ),
            Column("key", "blob", "32 random bytes (zeros while the slot is free).", export="size"),
        ),
    ),
)

SQLITE_TABLES: tuple[LogField, ...] = (
    LogField(
        "sqlite_schema",
        "SQLite's own catalogue (also called sqlite_master): the CREATE statement of every table and "
        "index above, and their root pages. Nothing else.",
    ),
)
"""SQLite's internal tables the relay's file holds. ``sqlite_stat1`` (planner statistics: row
counts per index) is never written (no ANALYZE, no ``PRAGMA optimize``; an older relay's one is
dropped at start) and ``sqlite_sequence`` never exists (no AUTOINCREMENT)."""

STAT_COUNTERS: tuple[str, ...] = (
    "http_<status>",
    "ws_connections",
    "ws_close_<code>",
    "accounts_created",
    "bundles_fetched",
    "mailboxes_created",
    "mailboxes_exists",
    "envelopes_stored",
    "envelopes_duplicate",
    "envelopes_not_found",
    "envelopes_mailbox_full",
    "envelopes_relay_full",
    "envelopes_pushed",
    "envelopes_acked",
    "polls",
    "envelopes_polled",
    "polls_held",
    "polls_superseded",
    "polls_busy",
    "swept_envelopes",
    "swept_mailboxes",
    "swept_access_tokens",
    "bus_down",
    "bus_up",
    "bus_fallback_checks",
    "bus_rings_failed",
    "bus_rings_resent",
)
"""Every counter the stats line can carry; ``<status>`` and ``<code>`` are numbers."""

LOG_FIELDS: tuple[LogField, ...] = (
    LogField("level", "Log level (INFO, WARNING, ERROR)."),
    LogField("logger", "Logger name: sotto.server, or uvicorn for the server's own start-up warnings."),
    LogField(
        "stats",
        "One JSON object of event counters for the last interval (default one hour): "
        + ", ".join(STAT_COUNTERS)
        + ". Counts only: no address, account, mailbox, message id or timing finer than the interval.",
    ),
    LogField("error", "For a failure inside the server: the exception type name only, no message or values."),
    LogField(
        "event",
        "relay started / relay stopped / bus down (with: unreachable at start or connection lost) / bus up "
        "(only with --bus).",
    ),
)

FILES: tuple[File, ...] = (
    File("relay.db", "The SQLite database with the tables above.", "As long as the relay runs."),
    File(
        "relay.db-wal, relay.db-shm",
        "SQLite's write-ahead log (recent page images of the same tables, in commit order across "
        "all mailboxes) and its index (page numbers only).",
        "The log is copied into relay.db and truncated to zero bytes at most 2 s after a write "
        "(checkpoint_interval_seconds), and both go when the relay stops.",
    ),
    File(
        "server.key",
        "32 random bytes: the key of the username hashes (mode 0600).",
        "As long as the relay runs; without it stored username hashes cannot be checked against guesses.",
    ),
)

NOT_HELD = (
    "client IP addresses or ports (never read; uvicorn's access log is off, X-Forwarded-For is not trusted)",
    "user agents or any other request header",
    "which account owns a mailbox",
    "senders of envelopes",
    "times finer than a day",
    "plaintext, or any key that decrypts a payload",
    "device secrets, delivery tokens and access tokens (SHA-256 only)",
    "usernames (keyed hash only)",
)


def table(name: str) -> Table:
    for t in TABLES:
        if t.name == name:
            return t
    raise KeyError(name)


def as_json() -> dict[str, object]:
    return {
        "version": MANIFEST_VERSION,
        "tables": [asdict(t) for t in TABLES],
        "log_fields": [asdict(f) for f in LOG_FIELDS],
        "stat_counters": list(STAT_COUNTERS),
        "files": [asdict(f) for f in FILES],
        "sqlite_tables": [asdict(t) for t in SQLITE_TABLES],
        "not_held": list(NOT_HELD),
    }
