"""Kernel state: register contexts, trap frames, modules, KDBG, process and thread."""
