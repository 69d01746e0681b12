"""The ``parley`` command: the SDK's client commands plus ``parley up``, which runs Parley
on its embedded defaults. This is the one package that imports the services."""

from __future__ import annotations

from parley.cli import app

from ._up import up

app.command("up")(up)


def main() -> None:
    """Entry point of the ``parley`` script."""
    app(prog_name="parley")


__all__ = ["app", "main", "up"]
