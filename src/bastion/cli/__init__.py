"""The ``bastion`` command line: serve, migrate, inspect and scaffold apps.

:mod:`bastion.cli.main` wires one module per command group; :mod:`~bastion.cli.discovery`
finds the app and its configuration file the same way for every command.
"""

from __future__ import annotations
