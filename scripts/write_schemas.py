#!/usr/bin/env python
"""Write the JSON Schemas of the files dashboards read (a test checks they are current)."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arena.status import DaemonStatus  # noqa: E402
from core.training_status import TrainingStatus  # noqa: E402

SCHEMAS = {"training_status.schema.json": TrainingStatus, "daemon_status.schema.json": DaemonStatus}

for name, model in SCHEMAS.items():
    path = ROOT / "schemas" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(model.model_json_schema(), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path}")
