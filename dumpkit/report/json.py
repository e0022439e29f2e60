"""JSON output: the versioned contract document (docs/json-schema.md)."""
from __future__ import annotations

import json as _json
from typing import Any, Optional

__all__ = ["render_json"]


def render_json(analysis: Any, *, extended: bool = False, indent: Optional[int] = 2) -> str:
    """``analysis.to_json(extended)`` serialised; hex values are lower-case ``"0x..."`` strings."""
    return _json.dumps(analysis.to_json(extended), indent=indent, ensure_ascii=False)
