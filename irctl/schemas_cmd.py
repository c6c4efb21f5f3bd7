"""`irctl schemas`: write the JSON Schema of every event type (the published contract)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def schemas(
    out: Annotated[Path, typer.Option(help="Directory to write <event_type>.json files into")]
    = Path("docs/schemas"),
) -> None:
    """Write the JSON Schema of every event type, one file each, plus an index."""
    from shared.events import json_schemas
    from shared.topics import CATALOG

    out.mkdir(parents=True, exist_ok=True)
    index = {}
    for event_type, schema in sorted(json_schemas().items()):
        path = out / f"{event_type}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        spec = next(s for t, s in CATALOG.items() if t.value == event_type)
        index[event_type] = {
            "schema": path.name, "topic": event_type, "dlq": f"{event_type}.dlq",
            "key": spec.key, "partitions": spec.partitions,
            "retention_ms": spec.retention_ms,
        }
    (out / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    Console().print(f"wrote {len(index)} event schemas to [bold]{out}[/bold]")
