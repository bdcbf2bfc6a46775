"""The ``wattmesh`` command line: ``main`` parses and dispatches, one module per command."""

from wattmesh.cli.dispatch import build_parser, main

__all__ = ["build_parser", "main"]
