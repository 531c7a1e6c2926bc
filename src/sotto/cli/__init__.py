"""The ``sotto`` command: a thin Typer + Rich face over :class:`sotto.client.sdk.Client`.

Each command opens the profile (an encrypted store in ``~/.sotto``, ``$SOTTO_HOME`` or
``--profile DIR``), does one thing through the SDK, prints it and exits; ``sotto listen`` stays
connected until Ctrl-C. Every failure is a one-line message and a documented exit code
(:class:`sotto.cli.failures.ExitCode`); the hidden ``--debug`` flag shows tracebacks instead.
"""
