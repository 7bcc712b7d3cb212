"""Write docs/manifest.schema.json from the manifest's records (`edgecls.manifest`): run after changing the format
(a test compares the two)."""

from __future__ import annotations

import json
from pathlib import Path

from edgecls.fileio import atomic_write_bytes
from edgecls.manifest import manifest_schema

SCHEMA_FILE = Path(__file__).parents[1] / "docs" / "manifest.schema.json"


def schema_text() -> str:
    return json.dumps(manifest_schema(), indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    atomic_write_bytes(SCHEMA_FILE, schema_text().encode())
    print(f"wrote {SCHEMA_FILE}")
