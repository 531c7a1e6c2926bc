"""Fixtures for the CLI tests: a real relay process (started through `sotto server`), the CLI
in process through Typer's runner, and profiles.

In-process runs create stores with the fast test Argon2 setting (``Client.create`` is wrapped to
pass it); ``test_entry_point.py`` runs the real command in a subprocess with the real setting.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from sotto.cli.app import app
from sotto.cli.failures import Settings
from sotto.client.runtime import Engine
from sotto.client.sdk import Client
from sotto.crypto.passphrase import Argon2Params
from sotto.demo.relay import RelayProcess

PASSPHRASE = "a cli test passphrase"


@pytest.fixture(scope="session")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """One relay for the CLI tests, run exactly as a user would: ``python -m sotto.cli server``."""
    root = tmp_path_factory.mktemp("cli-relay")
    process = RelayProcess(root / "data", root / "relay.log", command=("-m", "sotto.cli", "server"))
    with process:
        process.start()
        yield process


@pytest.fixture(scope="session", autouse=True)
def fast_stores() -> Iterator[None]:
    """New stores get the test Argon2 setting (opening one uses the setting it was made with)."""
    create = Client.create.__func__  # type: ignore[attr-defined]

    async def fast(cls: type[Client], *args: Any, **kwargs: Any) -> Client:
        kwargs.setdefault("kdf", Argon2Params.TESTING)
        client: Client = await create(cls, *args, **kwargs)
        return client

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Client, "create", classmethod(fast))
        yield


@pytest.fixture(autouse=True)
def no_spread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The waits between an action's requests (an invite's mailbox and token, a rotation's
    creations) are seconds of wall time on the real clock: none here; the tests of the spread
    itself (``tests/client/test_chores.py``) run on virtual time with the real waits."""
    monkeypatch.setattr(Engine, "spread_s", (0.0, 0.0))


@pytest.fixture(autouse=True)
def no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Settings, "debug", False)


class Sotto:
    """``sotto ARGS`` in process; the passphrase comes from the environment unless ``passphrase=None``."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, passphrase: str | None = PASSPHRASE, input: str | None = None) -> Result:
        env = {"SOTTO_PASSPHRASE": passphrase, "SOTTO_HOME": None, "SOTTO_SERVER": None, "SOTTO_DEBUG": None}
        return self.runner.invoke(app, list(args), env=env, input=input)


@pytest.fixture
def sotto() -> Sotto:
    return Sotto()


def flat(text: str) -> str:
    """Output with runs of whitespace as one space (Rich may wrap at 80 columns)."""
    return " ".join(text.split())


def make_profile(sotto: Sotto, relay: RelayProcess, directory: Path, name: str) -> Path:
    result = sotto("init", "--server", relay.url, "--name", name, "--profile", str(directory))
    assert result.exit_code == 0, result.output
    return directory
