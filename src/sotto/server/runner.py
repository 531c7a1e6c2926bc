"""Run the relay under uvicorn with settings that keep client addresses out of everything.

uvicorn by default logs every request with the client's address and trusts X-Forwarded-For
from loopback; here the access log is off, proxy headers are ignored, its error logger stays at
WARNING behind an address scrubber, and WebSocket compression is off (compressing padded
payloads would let frame sizes reveal the unpadded length).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import uvicorn

from sotto.server.app import create_app
from sotto.server.config import ServerConfig
from sotto.server.logging import uvicorn_log_config
from sotto.wire.api import DEFAULT_CADENCE_TICK_SECONDS
from sotto.wire.limits import MAX_FRAME_BYTES


def uvicorn_config(config: ServerConfig, **overrides: Any) -> uvicorn.Config:
    settings: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "access_log": False,
        "proxy_headers": False,
        "forwarded_allow_ips": "",
        "server_header": False,
        "log_config": uvicorn_log_config(),
        "ws_per_message_deflate": False,
        # The sans-I/O implementation holds an idle connection in about 19 KB (the legacy one, 27).
        "ws": "websockets-sansio",
        # Frames up to twice the limit reach the app, which closes them with 4413.
        "ws_max_size": 2 * MAX_FRAME_BYTES,
        "lifespan": "on",
    }
    settings.update(overrides)
    return uvicorn.Config(create_app(config), **settings)


def run(
    host: str = "127.0.0.1",
    port: int = 8787,
    data_dir: Path = Path("./data"),
    *,
    cadence_tick_seconds: int = DEFAULT_CADENCE_TICK_SECONDS,
    **overrides: Any,
) -> None:
    """Serve until interrupted: ``sotto server`` and ``python -m sotto.server`` call this."""
    config = ServerConfig(
        data_dir=Path(data_dir), host=host, port=port, cadence_tick_seconds=cadence_tick_seconds
    )
    uvicorn.Server(uvicorn_config(config, **overrides)).run()
