"""Result tables for experiments: rows of dicts written as JSON and as a Markdown table, side by side."""

from __future__ import annotations

import os
from pathlib import Path

from edgecls.fileio import atomic_write_bytes, atomic_write_json


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_results(
    out_dir: str | os.PathLike, name: str, rows: list[dict], columns: list[str], meta: dict | None = None
) -> Path:
    """Write `<name>.json` (rows + meta) and `<name>.md` (the table) into `out_dir`; returns the JSON path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"{name}.json", {"meta": meta or {}, "rows": rows})
    title = f"# {name}\n\n" + "".join(f"- {k}: {v}\n" for k, v in (meta or {}).items()) + "\n"
    atomic_write_bytes(out / f"{name}.md", (title + markdown_table(rows, columns)).encode())
    return out / f"{name}.json"
