"""The relay's logging: counters only, and uvicorn's address-bearing lines scrubbed or silenced."""

from __future__ import annotations

import logging

from sotto.server.logging import AddressScrubber, Stats, uvicorn_log_config


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
    assert config["handlers"]["stderr"]["filters"] == ["scrub"]


def test_stats_count_and_reset() -> None:
    stats = Stats()
    stats.count("http_404")
    stats.count("http_404", 2)
    assert stats.snapshot() == {"http_404": 3}
    stats.flush()
    assert stats.snapshot() == {}
