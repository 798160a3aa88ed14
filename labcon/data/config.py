"""The `[data]` table of a session config -> DataBlock. Errors start with the dotted key path.

Schema (every key optional except `path` when there is no `preset`):

    [data]
    preset = "shapes"            # shapes | mnist_tiny | imagenette | imagewoof: defaults for the rest
    path = "data/mnist_tiny"     # data folder, relative to the config file's folder
    extensions = [".png", ".jpg"]
    splitter = {kind = "grandparent", train = "train", valid = "valid"}
             # or {kind = "random", valid_pct = 0.2, seed = 0}
             # or {kind = "csv", file = "labels.csv", col = "is_valid", name_col = "name"}
    labeller = {kind = "parent"}  # or {kind = "regex", pattern = "^(.+)_\\d+"}, {kind = "csv", file, col, name_col, delim}
             # delim = " ": several labels per row -> multi-label (multi-hot targets; use loss = "bce")
    size = 64                    # output size of the resize/crop item transform
    item_tfms = ["flip", {kind = "random_resized_crop", scale = [0.35, 1.0]}]
             # kinds: resize (method = "crop"|"squish"), random_resized_crop (scale, ratio), flip (p),
             #        perspective (magnitude, p), make_rgb, dihedral (p: the 8 symmetries on uint8)
    batch_tfms = [{kind = "affine", max_rotate = 10.0}, {kind = "normalize", stats = "imagenet"}]
             # kinds: affine (flip, max_rotate, max_zoom, max_warp, p_affine), normalize (stats | mean, std),
             #        dihedral (p: the 8 symmetries on the device)
    bs = 64
    num_workers = 2
    skip_bad = false

A string is shorthand for `{kind = "<string>"}` wherever a table with `kind` is expected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labcon.data.augment import IMAGENET_STATS, Affine, BatchTransform, Normalize
from labcon.data.block import DataBlock
from labcon.data.dihedral import BatchDihedral, Dihedral
from labcon.data.items import (
    ColLabeller,
    ColSplitter,
    FileGetter,
    GrandparentSplitter,
    ParentLabeller,
    RandomSplitter,
    RegexLabeller,
)
from labcon.data.transforms import (
    CropTransform,
    Flip,
    ItemTransform,
    MakeRGB,
    Perspective,
    RandomResizedCrop,
    Resize,
)
from labcon.errors import ConfigError, DataError

KEYS = (
    "preset",
    "path",
    "extensions",
    "splitter",
    "labeller",
    "size",
    "item_tfms",
    "batch_tfms",
    "bs",
    "num_workers",
    "skip_bad",
)

_SPLITTERS: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
    "grandparent": (GrandparentSplitter, ("train", "valid")),
    "random": (RandomSplitter, ("valid_pct", "seed")),
    "csv": (ColSplitter, ("file", "col", "name_col")),
}
_LABELLERS: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
    "parent": (ParentLabeller, ()),
    "regex": (RegexLabeller, ("pattern", "match_path")),
    "csv": (ColLabeller, ("file", "col", "name_col", "delim")),
}
_ITEM: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
    "resize": (Resize, ("size", "method")),
    "random_resized_crop": (RandomResizedCrop, ("size", "scale", "ratio")),
    "flip": (Flip, ("p",)),
    "perspective": (Perspective, ("magnitude", "p")),
    "make_rgb": (MakeRGB, ()),
    "dihedral": (Dihedral, ("p",)),
}
_BATCH: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
    "affine": (Affine, ("flip", "max_rotate", "max_zoom", "max_warp", "p_affine")),
    "normalize": (Normalize, ("mean", "std", "stats")),
    "dihedral": (BatchDihedral, ("p",)),
}


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _range(lo: float, hi: float) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if _is_num(v) and lo <= v <= hi else f"must be a number from {lo:g} to {hi:g}, got {v!r}"

    return check


def _pair_of(lo: float, hi: float, what: str) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        ok = isinstance(v, list | tuple) and len(v) == 2 and all(_is_num(x) for x in v)
        if ok and lo < v[0] <= v[1] <= hi:
            return None
        return f"must be [low, high] with {what}, got {v!r}"

    return check


def _size(v: Any) -> str | None:
    ok = isinstance(v, int) and not isinstance(v, bool) and v >= 1
    ok = ok or (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and x >= 1 for x in v))
    return None if ok else f"must be a whole number of pixels >= 1 (or [width, height]), got {v!r}"


def _numbers(v: Any) -> str | None:
    ok = isinstance(v, list) and v and all(_is_num(x) for x in v)
    return None if ok else f"must be a list of numbers (one per channel), got {v!r}"


# Transform settings checked when the config is read: a wrong type or range must not surface later, mid-epoch,
# as if an image were corrupt.
_TFM_PARAMS: dict[str, Callable[[Any], str | None]] = {
    "size": _size,
    "scale": _pair_of(0, 1, "0 < low <= high <= 1 (fractions of the image area)"),
    "ratio": _pair_of(0, math.inf, "0 < low <= high (aspect ratios)"),
    "p": _range(0, 1),
    "magnitude": _range(0, 1),
    "max_rotate": _range(0, 180),
    "max_zoom": _range(1, 10),
    "max_warp": _range(0, 1),
    "p_affine": _range(0, 1),
    "flip": lambda v: None if isinstance(v, bool) else f"must be true or false, got {v!r}",
    "method": lambda v: None if v in ("crop", "squish") else f'must be "crop" or "squish", got {v!r}',
    "mean": _numbers,
    "std": _numbers,
}


def check_data_table(table: Any) -> None:
    """The [data] values checked without the disk (sizes, transform settings); ConfigError 'data.<key>: ...'.
    Unknown keys are left to block_from_config (a config may be typed before its data section is final)."""
    if not isinstance(table, dict):
        raise _err("data", "must be a table")
    extra = {"size": _positive_int(table, "size")}
    _positive_int(table, "bs")
    _positive_int(table, "num_workers", 0)
    if "item_tfms" in table:
        _list("data.item_tfms", table["item_tfms"], _ITEM, extra, ItemTransform)
    if "batch_tfms" in table:
        _list("data.batch_tfms", table["batch_tfms"], _BATCH, extra, BatchTransform)
    if "skip_bad" in table and not isinstance(table["skip_bad"], bool):
        raise _err("data.skip_bad", f"must be true or false, got {table['skip_bad']!r}")


def _err(key: str, msg: str) -> ConfigError:
    return ConfigError(f"{key}: {msg}")


def _part(
    key: str, spec: Any, table: dict[str, tuple[Callable[..., Any], tuple[str, ...]]], extra: dict[str, Any]
) -> Any:
    if isinstance(spec, str):
        spec = {"kind": spec}
    if not isinstance(spec, dict):
        raise _err(key, f'expected a table like {{kind = "{next(iter(table))}"}}, got {spec!r}')
    kind = spec.get("kind")
    if kind not in table:
        raise _err(f"{key}.kind", f"unknown kind {kind!r}; choose one of: {', '.join(table)}")
    cls, allowed = table[kind]
    args = {k: v for k, v in spec.items() if k != "kind"}
    for k in args:
        if k not in allowed:
            raise _err(f"{key}.{k}", f"unknown setting for {kind}; allowed: {', '.join(allowed) or '(none)'}")
        problem = _TFM_PARAMS[k](args[k]) if table in (_ITEM, _BATCH) and k in _TFM_PARAMS else None
        if problem:
            raise _err(f"{key}.{k}", problem)
    if "size" in allowed and "size" not in args:
        if extra.get("size") is None:
            raise _err(f"{key}.size", f"{kind} needs a size (or set data.size)")
        args["size"] = extra["size"]
    if kind == "normalize":
        stats = args.pop("stats", None)
        if stats is not None and stats != "imagenet":
            raise _err(f"{key}.stats", f"unknown stats {stats!r}; use 'imagenet' or give mean and std")
        args.setdefault("mean", IMAGENET_STATS[0])
        args.setdefault("std", IMAGENET_STATS[1])
    for k in ("scale", "ratio"):
        if k in args:
            args[k] = tuple(args[k])
    try:
        return cls(**args)
    except DataError as e:
        raise _err(key, str(e)) from None
    except TypeError as e:
        raise _err(key, f"bad settings for {kind}: {e}") from None


def _positive_int(table: dict[str, Any], key: str, minimum: int = 1) -> int | None:
    v = table.get(key)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise _err(f"data.{key}", f"must be a whole number >= {minimum}, got {v!r}")
    return v


def block_from_config(table: dict[str, Any], base_dir: Path) -> DataBlock:
    """Build and check a DataBlock from a `[data]` table; ConfigError messages start with 'data.<key>'."""
    from labcon.data.datasets import PRESETS, preset_block

    if not isinstance(table, dict):
        raise _err("data", "must be a table")
    if "kind" in table:  # text data has its own keys (labcon.data.text_config)
        from labcon.data.text_config import text_block_from_config

        return text_block_from_config(table, base_dir)  # type: ignore[return-value]
    for k in table:
        if k not in KEYS:
            raise _err(f"data.{k}", f"unknown key; known keys: {', '.join(KEYS)}")
    size, bs, nw = (
        _positive_int(table, "size"),
        _positive_int(table, "bs"),
        _positive_int(table, "num_workers", 0),
    )
    path = table.get("path")
    if path is not None and not isinstance(path, str):
        raise _err("data.path", f"must be a string, got {path!r}")
    full = None if path is None else (Path(path) if Path(path).is_absolute() else Path(base_dir) / path)
    preset = table.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise _err("data.preset", f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
        try:
            block = preset_block(preset, full, size=size, bs=bs or 64)
        except DataError as e:
            raise _err("data.preset", str(e)) from None
    elif full is None:
        raise _err("data.path", 'missing: set path = "<data folder>" or preset = "shapes"')
    else:
        block = DataBlock(path=full, labeller=ParentLabeller(), item_tfms=[Resize(size)] if size else [])
    extra = {"size": size}
    if "extensions" in table:
        exts = table["extensions"]
        if not isinstance(exts, list) or not all(isinstance(e, str) for e in exts):
            raise _err("data.extensions", f'must be a list of strings like [".png"], got {exts!r}')
        block.get_items = FileGetter(exts)
    if "splitter" in table:
        block.splitter = _part("data.splitter", table["splitter"], _SPLITTERS, extra)
    if "labeller" in table:
        block.labeller = _part("data.labeller", table["labeller"], _LABELLERS, extra)
    if "item_tfms" in table:
        block.item_tfms = _list("data.item_tfms", table["item_tfms"], _ITEM, extra, ItemTransform)
        if size and not any(isinstance(t, CropTransform) for t in block.item_tfms):
            block.item_tfms.insert(0, Resize(size))
    elif size and preset is None:
        block.item_tfms = [Resize(size)]
    if "batch_tfms" in table:
        block.batch_tfms = _list("data.batch_tfms", table["batch_tfms"], _BATCH, extra, BatchTransform)
    if bs is not None:
        block.bs = bs
    if nw is not None:
        block.num_workers = nw
    if "skip_bad" in table:
        if not isinstance(table["skip_bad"], bool):
            raise _err("data.skip_bad", f"must be true or false, got {table['skip_bad']!r}")
        block.skip_bad = table["skip_bad"]
    _check_disk(block, preset)
    return block


def _list(key: str, specs: Any, table: dict, extra: dict[str, Any], want: type) -> list[Any]:
    if not isinstance(specs, list):
        raise _err(key, f"must be a list, got {specs!r}")
    return [_part(f"{key}[{i}]", s, table, extra) for i, s in enumerate(specs)]


def _check_disk(block: DataBlock, preset: str | None) -> None:
    downloaded = preset is not None and preset != "shapes"
    root = block.path
    # The folder first: with no folder, every other setting is beside the point.
    if root is None or not root.is_dir():
        hint = f" — download it with `labcon data get {preset}`" if downloaded else ""
        raise _err("data.path", f"folder {root} does not exist{hint}")
    if block.splitter is None:
        raise _err(
            "data.splitter",
            'missing: e.g. splitter = {kind = "grandparent", train = "train", valid = "valid"}',
        )
    if isinstance(block.splitter, GrandparentSplitter):
        for role in ("train", "valid"):
            prob = block.splitter.role_problem(role, root)
            if prob:
                if downloaded:  # a preset's folders are known: a missing one is an incomplete download
                    prob += (
                        f"; the download looks incomplete: remove {root} and run `labcon data get {preset}`"
                    )
                raise _err(f"data.splitter.{role}", prob)
    probs = block.static_problems()
    if probs:
        raise _err("data", "; ".join(probs))
