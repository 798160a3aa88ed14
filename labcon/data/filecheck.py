"""Every image file checked before training (headers and integrity, in parallel): all bad files at once."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from labcon.errors import DataError

# How many bad files a message lists by name (the rest are counted).
SHOWN = 20


def image_problem(path: Path) -> str | None:
    """Why `path` is not a readable image, or None. Cheap: header, PIL's verify(), and a JPEG's end marker
    (a JPEG cut short is the commonest damage and verify() does not see it)."""
    from labcon.data.transforms import bad_reason

    try:
        with Image.open(path) as img:
            fmt = img.format
            img.verify()
        if fmt == "JPEG":
            with path.open("rb") as f:
                f.seek(max(0, path.stat().st_size - 4096))
                if b"\xff\xd9" not in f.read():
                    return "truncated image data (no JPEG end marker)"
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        return bad_reason(e)
    return None


def find_bad_images(paths: Sequence[Path], workers: int | None = None) -> list[tuple[Path, str]]:
    """(path, why) for each unreadable image among `paths`, in their order; threads, as PIL releases the GIL."""
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = list(pool.map(image_problem, paths, chunksize=64))
    return [(p, why) for p, why in zip(paths, found, strict=True) if why is not None]


def bad_images_error(bad: Sequence[tuple[Path, str]], total: int) -> DataError:
    """One DataError listing every bad file (the first SHOWN by name) and the two fixes."""
    lines = [f"  {p}: {why}" for p, why in bad[:SHOWN]]
    if len(bad) > SHOWN:
        lines.append(f"  ... and {len(bad) - SHOWN} more")
    return DataError(
        f"{len(bad)} of {total} image files cannot be read:\n"
        + "\n".join(lines)
        + "\nFix or delete them, or "
        "set skip_bad = true in [data] (skip_bad=True in Python) to train without them"
    )
