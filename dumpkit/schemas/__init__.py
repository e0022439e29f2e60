"""The JSON contract: every ``--json`` document dumpkit prints, published as JSON Schema
(draft 2020-12) files shipped in the package (``dumpkit/schemas/<name>.schema.json``).

>>> from dumpkit.schemas import SCHEMA_VERSION, schema, schema_names
>>> schema("analysis")["title"]                                   # doctest: +SKIP

``validate(doc, name)`` checks a document with the ``jsonschema`` package when it is
installed (it is in the ``test`` extra).  docs/json-schema.md describes every key.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any, Dict, List

__all__ = ["SCHEMA_VERSION", "schema", "schema_names", "schema_path", "validate", "COMMAND_SCHEMAS"]

#: version carried as ``schema_version`` by every JSON document dumpkit prints
SCHEMA_VERSION = "1.1"

_HERE = os.path.dirname(os.path.abspath(__file__))

#: which schema each ``dumpkit COMMAND --json`` document follows (other helpers' commands add theirs here)
COMMAND_SCHEMAS: Dict[str, str] = {
    "analyze": "analysis", "text": "analysis", "info": "info", "modules": "modules", "stack": "stack",
    "read": "read", "scan": "scan", "symbols": "symbols", "logs": "logs",
    "batch": "batch", "buckets": "buckets",
}


def schema_path(name: str) -> str:
    return os.path.join(_HERE, f"{name}.schema.json")


def schema_names() -> List[str]:
    """The names of the shipped schemas (``analysis``, ``info``, ...)."""
    return sorted(f[: -len(".schema.json")] for f in os.listdir(_HERE) if f.endswith(".schema.json"))


@lru_cache(maxsize=None)
def _load(name: str) -> str:
    with open(schema_path(name), encoding="utf-8") as f:
        return f.read()


def schema(name: str) -> Dict[str, Any]:
    """The JSON Schema ``name`` as a dict (a fresh copy)."""
    if name not in schema_names():
        raise KeyError(f"no schema {name!r}; shipped: {', '.join(schema_names())}")
    return json.loads(_load(name))


def validate(doc: Any, name: str) -> None:
    """Raise ``jsonschema.ValidationError`` when ``doc`` does not follow schema ``name``
    (needs the ``jsonschema`` package; schemas refer to each other by file name)."""
    import jsonschema
    from referencing import Registry, Resource
    resources = []
    for n in schema_names():
        s = schema(n)
        resources.append((s["$id"], Resource.from_contents(s)))
    registry = Registry().with_resources(resources)
    s = schema(name)
    jsonschema.Draft202012Validator.check_schema(s)
    jsonschema.Draft202012Validator(s, registry=registry,
                                    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER).validate(doc)
