#!/usr/bin/env python
"""Production entry: ``python core/train.py --dataset data.jsonl [flags]``.

A thin path into the same front door and engine as ``trainer/cli_main.py`` (same flags, same
config merge, same exit codes); the one module in ``core/`` that imports ``trainer``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: the repository root replaces the script's own folder on the path, so
    # sibling modules never shadow top-level packages or the standard library.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from trainer.cli_main import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
