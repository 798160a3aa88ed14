"""`labcon data list | get NAME | summary TARGET | preview TARGET --out grid.png`.

TARGET is a TOML config with a [data] table, a preset name (shapes, mnist_tiny, imagenette, ...)
or a data folder (folder-per-class, with train/ and valid/ or val/ inside, else a random split).
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from labcon.cli.argtypes import at_least
from labcon.errors import DataError, LabconError


def register(subparsers: Any) -> None:
    """Add the `data` command and its subcommands."""
    p = subparsers.add_parser(
        "data",
        help="datasets: list, download, summarise, preview",
        description="Datasets and data blocks: list what is known and present, download one, walk a sample "
        "through every stage of a data block, or write a labelled grid of samples to a PNG.",
    )
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", help="data folder (default: $LABCON_DATA or ./data)")

    q = sub.add_parser(
        "list",
        parents=[common],
        help="known datasets and presets, and which are present",
        description="List the downloadable datasets and presets, marking those already in the data folder.",
    )
    q.set_defaults(func=cmd_list)

    q = sub.add_parser(
        "get",
        parents=[common],
        help="download and unpack a dataset (resumes partial downloads)",
        description="Download a dataset into the data folder, check it and unpack it; an interrupted "
        "download resumes where it stopped. 'shapes' generates the built-in set instead.",
    )
    q.add_argument("name", help="dataset name from `labcon data list`, or 'shapes' for the built-in set")
    q.set_defaults(func=cmd_get)

    for name, fn, helptext in (
        ("summary", cmd_summary, "walk one sample through every stage of the data block"),
        ("preview", cmd_preview, "write a grid of samples with labels to a PNG"),
    ):
        q = sub.add_parser(
            name, parents=[common], help=helptext, description=helptext[0].upper() + helptext[1:] + "."
        )
        q.add_argument("target", help="config.toml with a [data] table, a preset name, or a data folder")
        q.add_argument(
            "--size", type=at_least(1, "a size in pixels"), help="image size (presets and folders)"
        )
        if name == "preview":
            q.add_argument("--out", default="grid.png", help="output PNG (default grid.png)")
            q.add_argument("-n", type=int, default=16, help="number of samples (default 16)")
            q.add_argument("--no-augment", action="store_true", help="show validation samples, unaugmented")
            q.add_argument(
                "--scale",
                type=int,
                default=None,
                help="output pixels per image pixel (default: enlarge small images to about 64 pixels)",
            )
        q.set_defaults(func=fn)


def _root(args: argparse.Namespace) -> Path:
    from labcon.data.datasets import data_root

    return data_root(args.root)


def cmd_list(args: argparse.Namespace) -> int:
    """Print the registry and presets, marking what is already on disk."""
    from labcon.data.datasets import PRESETS
    from labcon.data.downloads import REGISTRY

    root = _root(args)
    print(f"data folder: {root}")
    print(f"{'name':<16} {'folder':<18} {'here':<5} description")
    print(
        f"{'shapes':<16} {'shapes':<18} {'yes' if (root / 'shapes').is_dir() else 'no':<5} built-in, generated offline"
    )
    for e in REGISTRY.values():
        here = "yes" if (root / e.folder).is_dir() else "no"
        print(f"{e.name:<16} {e.folder:<18} {here:<5} {e.description}")
    print(f"presets for summary/preview/[data] preset: {', '.join(PRESETS)}")
    return 0


class _Bar:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, label: str):
        self.label, self.last = label, 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and (total is None or done < total):
            return
        self.last = now
        mb = done / 1e6
        if total:
            frac = done / total
            bar = "#" * int(30 * frac)
            sys.stderr.write(f"\r{self.label} [{bar:<30}] {frac:6.1%} {mb:8.1f}/{total / 1e6:.1f} MB")
        else:
            sys.stderr.write(f"\r{self.label} {mb:8.1f} MB")
        sys.stderr.flush()


def cmd_get(args: argparse.Namespace) -> int:
    """Download (or generate, for shapes) a dataset into the data folder."""
    if args.name == "shapes":
        from labcon.data.datasets import ensure_builtin

        print(ensure_builtin(args.root))
        return 0
    from labcon.data.downloads import download, get_entry

    entry = get_entry(args.name)
    path = download(entry, args.root, progress=_Bar(entry.name))
    sys.stderr.write("\n")
    print(path)
    return 0


def resolve_block(target: str, size: int | None = None, root: str | None = None) -> Any:
    """A DataBlock from a config file, a preset name or a data folder."""
    from labcon.data.block import DataBlock
    from labcon.data.datasets import PRESETS, data_root, preset_block
    from labcon.data.items import GrandparentSplitter, ParentLabeller, RandomSplitter
    from labcon.data.transforms import Resize

    p = Path(target)
    if p.suffix == ".toml":
        if not p.is_file():
            raise DataError(f"config file {p} does not exist")
        try:
            doc = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise DataError(f"{p}: {e}") from None
        if "data" not in doc:
            raise DataError(f"{p} has no [data] table")
        return DataBlock.from_config(doc["data"], p.parent)
    if target in PRESETS and not p.is_dir():
        folder = None
        if target != "shapes":
            folder = {
                "mnist_tiny": "mnist_tiny",
                "imagenette": "imagenette2-160",
                "imagewoof": "imagewoof2-160",
            }[target]
        return preset_block(target, data_root(root) / folder if folder else None, size=size)
    if not p.is_dir():
        raise DataError(f"{target!r} is not a .toml config, a preset ({', '.join(PRESETS)}) or a folder")
    subs = {d.name for d in p.iterdir() if d.is_dir()}
    valid = next((v for v in ("valid", "val", "validation", "test") if v in subs), None)
    splitter = (
        GrandparentSplitter("train", valid) if "train" in subs and valid else RandomSplitter(0.2, seed=0)
    )
    return DataBlock(path=p, splitter=splitter, labeller=ParentLabeller(), item_tfms=[Resize(size or 64)])


def cmd_summary(args: argparse.Namespace) -> int:
    """Print the block's stage-by-stage summary."""
    print(resolve_block(args.target, args.size, args.root).summary())
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    """Write a labelled grid of samples to a PNG."""
    if args.n < 1:
        raise LabconError(f"-n must be a positive number of samples, got {args.n}")
    if args.scale is not None and not 1 <= args.scale <= 32:
        raise DataError(f"--scale must be between 1 and 32, got {args.scale}")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise LabconError(
            f"cannot write {out}: folder {out.parent} does not exist; create it or choose another --out"
        )
    img = resolve_block(args.target, args.size, args.root).show_batch(
        n=args.n, augment=not args.no_augment, scale=args.scale
    )
    try:
        img.save(out)
    except (OSError, ValueError) as e:
        raise LabconError(f"cannot write {out}: {getattr(e, 'strerror', None) or e}") from None
    print(f"wrote {args.out} ({img.size[0]}x{img.size[1]})")
    return 0
