"""Write edgecls/zoo/catalog.json from the registry: run after adding or changing a model (a test compares the two)."""

from __future__ import annotations

import json

from edgecls.fileio import atomic_write_bytes
from edgecls.zoo import count_macs, count_parameters, create_model, list_models, model_info
from edgecls.zoo.catalog import CATALOG, SCHEMA


def catalog_from_code() -> dict:
    models = {}
    for name in list_models():
        model, info = create_model(name), model_info(name)
        models[name] = {
            "summary": info.summary,
            "paper": info.paper,
            "parameters": count_parameters(model),
            "macs_32x32": count_macs(model),
        }
    return {"schema": SCHEMA, "models": models}


if __name__ == "__main__":
    atomic_write_bytes(CATALOG, (json.dumps(catalog_from_code(), indent=1, ensure_ascii=False) + "\n").encode())
    print(f"wrote {CATALOG}")
