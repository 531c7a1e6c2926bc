"""The runner's uvicorn settings and the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sotto.server import ServerConfig
from sotto.server.runner import uvicorn_config


def test_uvicorn_settings_keep_addresses_out(tmp_path: Path) -> None:
    config = uvicorn_config(ServerConfig(data_dir=tmp_path))
    assert config.access_log is False
    assert config.proxy_headers is False
    assert config.server_header is False
    assert config.ws_per_message_deflate is False  # compressed padding would leak lengths
    assert config.forwarded_allow_ips in ("", [])
    assert config.host == "127.0.0.1" and config.port == 8787


def test_command_line_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sotto.server", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for option in ("--host", "--port", "--data"):
        assert option in result.stdout
