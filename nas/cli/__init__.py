"""The ``nas`` command line (:func:`nas.cli.main.main`): argparse only; it parses, calls the
library and prints."""
from __future__ import annotations

from nas.cli.main import main

__all__ = ["main"]
