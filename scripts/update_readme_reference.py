#!/usr/bin/env python
"""Rewrite the README's configuration reference from the schema (a test checks they agree)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainer.config.reference import README_BEGIN, README_END, config_reference  # noqa: E402

readme = ROOT / "README.md"
text = readme.read_text(encoding="utf-8")
head, rest = text.split(README_BEGIN, 1)
_, tail = rest.split(README_END, 1)
readme.write_text(f"{head}{README_BEGIN}\n{config_reference()}{README_END}{tail}", encoding="utf-8")
print(f"updated {readme}")
