"""Data blocks, loaders, the built-in dataset and the download registry."""

from labcon.data.augment import Affine, BatchTransform, Normalize
from labcon.data.block import DataBlock
from labcon.data.datasets import builtin_block, data_root, ensure_builtin, preset_block
from labcon.data.downloads import REGISTRY, download
from labcon.data.imageloader import BlockDataLoaders, ImageLoader
from labcon.data.items import (
    ColLabeller,
    ColSplitter,
    FileGetter,
    FuncSplitter,
    GrandparentSplitter,
    ParentLabeller,
    RandomSplitter,
    RegexLabeller,
    get_files,
)
from labcon.data.loaders import DataLoaders
from labcon.data.processors import Category
from labcon.data.transforms import Flip, ItemTransform, MakeRGB, Perspective, RandomResizedCrop, Resize

__all__ = [
    "Affine",
    "BatchTransform",
    "BlockDataLoaders",
    "Category",
    "ColLabeller",
    "ColSplitter",
    "DataBlock",
    "DataLoaders",
    "FileGetter",
    "Flip",
    "FuncSplitter",
    "GrandparentSplitter",
    "ImageLoader",
    "ItemTransform",
    "MakeRGB",
    "Normalize",
    "ParentLabeller",
    "Perspective",
    "REGISTRY",
    "RandomResizedCrop",
    "RandomSplitter",
    "RegexLabeller",
    "Resize",
    "builtin_block",
    "data_root",
    "download",
    "ensure_builtin",
    "get_files",
    "preset_block",
]
