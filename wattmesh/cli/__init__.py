"""The ``wattmesh`` command line: ``main`` parses and dispatches, one module per command."""

from wattmesh.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
