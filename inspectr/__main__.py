"""Provides ``python -m inspectr``."""

from inspectr.cli import main_entry

main_entry()
