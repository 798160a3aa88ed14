"""Looking at the data: `summary()` walks one sample through each stage; `show_batch()` draws a grid."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image, ImageDraw

from labcon.data.augment import BatchPipeline, Normalize
from labcon.data.processors import MultiCategory
from labcon.errors import DataError

if TYPE_CHECKING:
    from labcon.data.block import DataBlock


def describe(v: Any) -> str:
    """Type, shape, dtype and value range of a stage's output, on one line."""
    if isinstance(v, Image.Image):
        ext = v.getextrema()
        lo, hi = (min(e[0] for e in ext), max(e[1] for e in ext)) if isinstance(ext[0], tuple) else ext
        return f"PIL.Image mode={v.mode} size={v.size[0]}x{v.size[1]} uint8 range [{lo}, {hi}]"
    if isinstance(v, torch.Tensor):
        f = v.float()
        lo, hi = f.min().item(), f.max().item()
        fmt = "{:.0f}" if not v.is_floating_point() else "{:.3f}"
        return (
            f"Tensor shape={tuple(v.shape)} dtype={str(v.dtype).replace('torch.', '')} device={v.device} "
            f"range [{fmt.format(lo)}, {fmt.format(hi)}]"
        )
    return f"{type(v).__name__} {v!r}"


def _ms(seconds: float) -> str:
    return f"{1e3 * seconds:8.3f} ms"


def _timed_trace(steps: list[tuple[str, Any, float]]) -> Callable[[str, Any], None]:
    """A trace callback that also keeps the time since the previous stage ended (its own time excluded)."""
    last = [time.perf_counter()]

    def trace(name: str, v: Any) -> None:
        steps.append((name, v, time.perf_counter() - last[0]))
        last[0] = time.perf_counter()

    return trace


def summary(
    block: DataBlock, path: str | Path | None = None, device: torch.device | str | None = None
) -> str:
    """A text report of one training sample through every stage of `block`."""
    prep = block.check(path)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    out = [f"DataBlock summary — {prep.path}"]
    first = prep.train_items[0]
    rel = first.relative_to(prep.path) if first.is_relative_to(prep.path) else first
    out.append(f"1. get items  {block.get_items!r}: {prep.n_items} files; sample: {rel}")
    out.append(
        f"2. split      {block.splitter!r}: train {len(prep.train_items)}, valid {len(prep.valid_items)}"
        + (
            f" ({prep.n_items - len(prep.train_items) - len(prep.valid_items)} in neither)"
            if prep.n_items
            else ""
        )
    )
    label = str(block.labeller(first, prep.path))
    out.append(f"3. label      {block.labeller!r}: {label!r} (str)")
    shown = ", ".join(prep.vocab[:12]) + (" ..." if len(prep.vocab) > 12 else "")
    cat = block.processors[0]
    if isinstance(cat, MultiCategory):
        y0 = prep.train_labels[0]
        counts = torch.stack(prep.train_labels).sum(0) if prep.train_labels else torch.zeros(0)
        per = ", ".join(f"{v} {int(n)}" for v, n in zip(prep.vocab[:12], counts.tolist(), strict=False))
        out.append(
            f"4. categorise {cat!r}: {label!r} -> {cat.split(label)} -> multi-hot {[int(v) for v in y0.tolist()]} "
            f"(float, {len(prep.vocab)} labels); vocab from training: {len(prep.vocab)} [{shown}]"
        )
        out.append(
            f"   label sets: {sum(len(cat.decode_set(y)) for y in prep.train_labels) / max(1, len(prep.train_labels)):.2f} "
            f"labels per training item; items per label: {per}"
        )
    else:
        out.append(
            f"4. categorise Category: {label!r} -> {prep.train_labels[0]} (int); vocab from training: {len(prep.vocab)} [{shown}]"
        )
    if prep.valid_only:
        out.append(f"   ! labels only in validation (dropped): {', '.join(sorted(prep.valid_only))}")
    out.append("5. item transforms (training, in run order; workers, uint8; time per item):")
    steps: list[tuple[str, Any, float]] = []
    pipe = block.item_pipeline()
    x = pipe(first, random.Random(0), True, trace=_timed_trace(steps))
    out += [f"   {name:<38} {_ms(dt)}  {describe(v)}" for name, v, dt in steps]
    t = time.perf_counter()
    xb = torch.stack([x] * block.bs)
    per_item = (time.perf_counter() - t) / block.bs
    out.append(f"6. collate    (bs={block.bs}) {_ms(per_item)} per item  {describe(xb)}")
    t = time.perf_counter()
    xb = x.unsqueeze(0).to(dev)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    out.append(f"7. to device  {_ms(time.perf_counter() - t)} per item  {describe(xb)}")
    out.append("8. batch transforms (training, on the device; time for this one item):")
    steps = []
    block.batch_pipeline()(xb, True, torch.Generator().manual_seed(0), trace=_timed_trace(steps))
    out += [f"   {name:<38} {_ms(dt)}  {describe(v)}" for name, v, dt in steps]
    return "\n".join(out)


def _sample(
    block: DataBlock, n: int, augment: bool, path: str | Path | None
) -> tuple[torch.Tensor, list[str]]:
    prep = block.check(path)
    items, labels = (
        (prep.train_items, prep.train_labels) if augment else (prep.valid_items, prep.valid_labels)
    )
    idx = random.Random(0).sample(range(len(items)), min(n, len(items)))
    pipe = block.item_pipeline()
    xs, names = [], []
    for i in idx:
        try:
            xs.append(pipe(items[i], random.Random(i), augment))
        except DataError:
            if not block.skip_bad:
                raise
            continue
        y = labels[i]
        names.append(
            ";".join(prep.vocab[j] for j in torch.nonzero(y).flatten())
            if isinstance(y, torch.Tensor)
            else prep.vocab[y]
        )
    if not xs:
        raise DataError("no readable images to show")
    if len({tuple(x.shape) for x in xs}) > 1:
        raise DataError(
            "images differ in size — add a resize item transform (e.g. size = 64) to show a batch"
        )
    x = torch.stack(xs)
    bp = BatchPipeline([t for t in block.batch_tfms if not isinstance(t, Normalize)])
    return bp(x, augment, torch.Generator().manual_seed(0)).clamp_(0, 1), names


def show_batch(
    block: DataBlock,
    n: int = 16,
    augment: bool = True,
    path: str | Path | None = None,
    scale: int | None = None,
    cols: int | None = None,
) -> Image.Image:
    """A PIL grid of `n` samples (augmented training samples, or validation ones) with labels.

    `scale`: output pixels per image pixel (default: small images grow to about 64 pixels); `cols`: samples per
    row (default: a square). The labels, in grid order, are in `img.info['labels']` (tab-separated) and the
    cells' geometry in `img.info['layout']`, for front ends that show the labels as text.
    """
    x, names = _sample(block, n, augment, path)
    h, w = x.shape[2:]
    scale = scale if scale is not None else max(1, math.ceil(64 / max(h, w)))
    cw, ch = w * scale, h * scale
    cols = max(1, min(len(names), cols)) if cols else math.ceil(math.sqrt(len(names)))
    rows = math.ceil(len(names) / cols)
    pad, text_h = 4, 14
    grid = Image.new("RGB", (cols * (cw + pad) + pad, rows * (ch + text_h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    arr = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    for k, name in enumerate(names):
        r, c = divmod(k, cols)
        img = Image.fromarray(arr[k], "RGB").resize((cw, ch), Image.NEAREST)
        left, top = pad + c * (cw + pad), pad + r * (ch + text_h + pad)
        grid.paste(img, (left, top))
        draw.text((left, top + ch + 1), name[: max(4, cw // 6)], fill=(0, 0, 0))
    grid.info["labels"] = "\t".join(names)
    # Where each sample sits, so a front end can cut the cells out and lay them out again (labels as text).
    grid.info["layout"] = f"cols={cols} cell={cw}x{ch} pad={pad} text={text_h}"
    return grid
