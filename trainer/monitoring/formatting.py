"""Human-readable figures shared by the console progress lines and the terminal dashboard.

No heavy imports here: the terminal view uses it without transformers.
"""

from __future__ import annotations

import math
from typing import Any


def format_duration(seconds: Any) -> str:
    """``M:SS`` under an hour, ``H:MM:SS`` beyond, ``?`` when unknown (the web page's format)."""
    if not isinstance(seconds, (int, float)):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_number(value: Any, spec: str = ".4f") -> str:
    """A figure for people: ``n/a`` when there is none, ``nan`` / ``inf`` as such, never 0."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return "n/a"
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return format(value, spec)
