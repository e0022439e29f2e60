"""Renderers for an :class:`~dumpkit.analysis.engine.Analysis`: ``!analyze -v``-style text, JSON, summary."""
from __future__ import annotations

from .json import render_json
from .summary import render_summary
from .text import render_text

__all__ = ["render_text", "render_json", "render_summary"]
