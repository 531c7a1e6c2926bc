"""``python -m sotto.server --host 127.0.0.1 --port 8787 --data ./data``."""

from __future__ import annotations

import argparse
from pathlib import Path

from sotto.server.runner import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sotto.server", description="Run the Sotto relay.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8787, help="port (default 8787)")
    parser.add_argument("--data", type=Path, default=Path("./data"), help="data directory (default ./data)")
    args = parser.parse_args(argv)
    run(host=args.host, port=args.port, data_dir=args.data)


if __name__ == "__main__":
    main()
