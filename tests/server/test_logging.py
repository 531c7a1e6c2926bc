"""The relay's logging: counters only, and uvicorn's address-bearing lines scrubbed or silenced."""

from __future__ import annotations

import io
import logging
import logging.config
import sys
from collections.abc import Iterator

import pytest

from sotto.server.logging import AddressScrubber, LogRateLimit, NoTraceback, Stats, uvicorn_log_config

_CONFIGURED = ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio", "websockets", "sotto.server")


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1, msg, args, None)


def test_scrubber_removes_ipv4_and_ipv6_addresses() -> None:
    scrubber = AddressScrubber()
    for msg, args in [
        ('%s - "WebSocket %s" [accepted]', ("127.42.13.37:50122", "/v1/ws")),
        ("%s:%d - Upgrading to WebSocket", ("127.42.13.37", 50122)),
        ("peer %s left", ("2001:db8::7e57",)),
        ("peer [::ffff:10.1.2.3]:443 left", ()),
    ]:
        record = _record(msg, *args)
        assert scrubber.filter(record)
        text = record.getMessage()
        assert "<addr>" in text
        for leaked in ("127.42.13.37", "2001:db8", "10.1.2.3"):
            assert leaked not in text, text


def test_scrubber_leaves_other_text_alone() -> None:
    record = _record("stats %s", '{"http_404":3,"ws_close_4400":1}')
    AddressScrubber().filter(record)
    assert record.getMessage() == 'stats {"http_404":3,"ws_close_4400":1}'


def test_uvicorn_config_silences_access_log_and_info() -> None:
    config = uvicorn_log_config()
    assert config["loggers"]["uvicorn.access"]["handlers"] == []
    assert config["loggers"]["uvicorn.access"]["propagate"] is False
    assert config["loggers"]["uvicorn"]["level"] == "WARNING"
    assert config["loggers"]["uvicorn.error"]["level"] == "WARNING"
    assert config["handlers"]["stderr"]["filters"] == ["no_traceback", "scrub", "rate"]
    for name in ("asyncio", "websockets"):
        assert config["loggers"][name]["handlers"] == ["stderr"]
        assert config["loggers"][name]["propagate"] is False


def test_stats_count_and_reset() -> None:
    stats = Stats()
    stats.count("http_404")
    stats.count("http_404", 2)
    assert stats.snapshot() == {"http_404": 3}
    stats.flush()
    assert stats.snapshot() == {}


@pytest.fixture
def relay_log() -> Iterator[io.StringIO]:
    """The relay's logging configuration, writing into a buffer; the loggers restored after."""
    saved = {
        name: (list(log.handlers), log.level, log.propagate, log.disabled)
        for name in _CONFIGURED
        for log in [logging.getLogger(name)]
    }
    buffer = io.StringIO()
    config = uvicorn_log_config()
    config["handlers"]["stderr"]["stream"] = buffer
    logging.config.dictConfig(config)
    try:
        yield buffer
    finally:
        for name, (handlers, level, propagate, disabled) in saved.items():
            log = logging.getLogger(name)
            log.handlers[:] = handlers
            log.setLevel(level)
            log.propagate, log.disabled = propagate, disabled


def test_asyncio_lines_carry_no_address_and_no_traceback(relay_log: io.StringIO) -> None:
    try:
        raise OSError(24, "Too many open files")
    except OSError as exc:
        logging.getLogger("asyncio").error(
            "socket.accept() out of system resource\nsocket: <socket laddr=('127.42.13.37', 8787)>",
            exc_info=exc,
        )
    text = relay_log.getvalue()
    assert "socket.accept() out of system resource" in text and "[OSError]" in text
    assert "127.42.13.37" not in text and "<addr>" in text
    assert "Traceback" not in text and "Too many open files" not in text


def test_a_flood_of_one_line_is_rate_limited(relay_log: io.StringIO) -> None:
    log = logging.getLogger("uvicorn.error")
    for n in range(10_000):
        log.warning("Invalid HTTP request received from %s (%d)", "127.0.0.9", n)
    lines = relay_log.getvalue().splitlines()
    assert 1 <= len(lines) <= 10
    assert not any("127.0.0.9" in line for line in lines)


def test_rate_limit_reports_what_it_held_back() -> None:
    limit = LogRateLimit(burst=2, interval=3_600.0)
    records = [
        logging.LogRecord("x", logging.WARNING, __file__, 1, "bad frame %d", (n,), None) for n in range(5)
    ]
    assert [limit.filter(r) for r in records] == [True, True, False, False, False]
    assert limit.suppressed == 3
    other = _record("another kind")
    assert limit.filter(other)
    assert other.getMessage() == "another kind (3 lines held back)"


def test_no_traceback_keeps_the_type_name_only() -> None:
    try:
        raise ValueError("secret request data")
    except ValueError:
        record = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    assert NoTraceback().filter(record)
    assert record.exc_info is None and record.getMessage() == "failed [ValueError]"
