"""Installing and removing a Runner's callbacks (a mixin: the Runner rebuilds its event tables after each change)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from labcon.core.events import Callback, check_callback


class CallbackHost:
    """The callback list of a Runner; `_rebuild` (the Runner's) recomputes what each event calls."""

    cbs: list[Callback]

    def _rebuild(self) -> None:
        raise NotImplementedError

    # ----- callbacks -------------------------------------------------------------------------------
    def add_cbs(self, cbs: Iterable[Callback]) -> None:
        """Register callbacks permanently (checked for unknown event names and name clashes)."""
        for cb in cbs:
            check_callback(cb)
            clash = self.cb(cb.name)
            if clash is not None and clash is not cb:
                raise ValueError(f"a callback named '{cb.name}' is already installed; remove it first")
            if any(cb is c for c in self.cbs):
                continue
            cb.check_runner(self)  # type: ignore[arg-type]
            cb.runner = self
            self.cbs.append(cb)
        self._rebuild()

    def remove_cbs(self, cbs: Iterable[Callback | str]) -> None:
        """Unregister callbacks (objects or names)."""
        for cb in cbs:
            obj = self.cb(cb) if isinstance(cb, str) else cb
            if obj is None or not any(obj is c for c in self.cbs):
                raise ValueError(
                    f"no callback {cb!r} installed; installed: {', '.join(c.name for c in self.cbs)}"
                )
            self.cbs = [c for c in self.cbs if c is not obj]
        self._rebuild()

    @contextlib.contextmanager
    def added_cbs(self, cbs: Iterable[Callback]) -> Iterator[None]:
        """Callbacks installed only inside the with-block."""
        cbs = list(cbs)
        self.add_cbs(cbs)
        try:
            yield
        finally:
            self.remove_cbs([c for c in cbs if any(c is x for x in self.cbs)])

    @contextlib.contextmanager
    def removed_cbs(self, cbs: Iterable[Callback | str]) -> Iterator[None]:
        """Callbacks taken out only inside the with-block."""
        objs = [self.cb(c) if isinstance(c, str) else c for c in cbs]
        objs = [c for c in objs if c is not None]
        self.remove_cbs(objs)
        try:
            yield
        finally:
            self.add_cbs(objs)

    def cb(self, name: str) -> Callback | None:
        """The installed callback with this name, or None."""
        return next((c for c in self.cbs if c.name == name), None)
