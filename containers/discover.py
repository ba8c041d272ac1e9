"""The newest complete image per OS in a dated image tree.

Layout: ``<root>/<OS>/<YYYY-MM-DD[suffix]>/``. A dated directory counts once
the image build has written its completion marker (``.complete`` by default)
into it, so a cron job regenerating the execute-point configuration never
points nodes at a half-copied image. The image is the single ``*.sif`` file
in that directory, or the directory itself (an unpacked sandbox).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

DATED_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T_.-][A-Za-z0-9:._-]*)?\Z")
MARKER = ".complete"


def image_in(directory: Path) -> Path:
    """The image a complete dated directory holds."""
    sifs = sorted(directory.glob("*.sif"))
    return sifs[0] if len(sifs) == 1 else directory


def newest_image(os_dir: Path, marker: str = MARKER) -> Path | None:
    """The image of the newest complete dated directory below one OS, or None."""
    if not os_dir.is_dir():
        return None
    dated = sorted(
        (d for d in os_dir.iterdir() if d.is_dir() and DATED_RE.match(d.name)),
        key=lambda d: d.name,
        reverse=True,
    )
    for directory in dated:
        if (directory / marker).exists():
            return image_in(directory)
    return None


def discover_images(root: Path, names: Iterable[str], marker: str = MARKER) -> dict[str, str]:
    """Images found for each OS name; OS names with no complete image are left out."""
    found = {}
    for name in names:
        image = newest_image(Path(root) / name, marker)
        if image is not None:
            found[name] = str(image)
    return found
