"""What item and batch transforms share: a run order, whether they are random, and a readable repr."""

from __future__ import annotations


class Transform:
    """Base of every data transform; `order` fixes where it runs, `random` marks augmentations."""

    order = 50
    random = False

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"
