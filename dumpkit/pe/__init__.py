"""PE images (headers, sections, exports, CodeView, version, .pdata/.xdata) and image providers."""
from __future__ import annotations

from .image import CodeView, PEImage, Section
from .provider import ChainImages, DumpMemoryImages, ImageProvider, StoreImages
from .unwindinfo import RuntimeFunction, UnwindCode, UnwindInfo, decode_unwind_info

__all__ = ["PEImage", "Section", "CodeView", "RuntimeFunction", "UnwindCode", "UnwindInfo",
           "decode_unwind_info", "ImageProvider", "DumpMemoryImages", "StoreImages", "ChainImages"]
