"""Figures without a display: pyplot on the Agg backend, and one way to write a figure to a PNG."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["pyplot", "write_png"]


def pyplot() -> ModuleType:
    """`matplotlib.pyplot` on the Agg backend (no display needed; imported on first use, it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_png(figure: Any, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Lay out `figure`, write it to `path` (parent folders created) and close it; returns the path."""
    figure.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=dpi)
    pyplot().close(figure)
    return out
