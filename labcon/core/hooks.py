"""Forward/backward hooks on modules that always remove themselves, and the per-runner hook registry."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from torch import nn

from labcon.errors import LabconError
from labcon.fmt import did_you_mean

HOOK_KINDS: tuple[str, ...] = ("forward", "backward")
HOOK_SCOPES: tuple[str, ...] = ("fit", "session")

# fn(module, input, output) for forward hooks; fn(module, grad_input, grad_output) for backward hooks.
HookFn = Callable[[nn.Module, Any, Any], Any]


class Hook:
    """One forward or backward hook on a module; a context manager that removes it on exit.

    `attached=False` keeps the hook registered but off the module until `attach()`: a module with no hooks
    takes torch's fast call path, so a hook needed only on some batches costs nothing on the others.
    """

    def __init__(
        self,
        module: nn.Module,
        fn: HookFn,
        kind: str = "forward",
        *,
        path: str = "",
        owner: str = "user",
        scope: str = "fit",
        id: int = 0,
        attached: bool = True,
    ):
        if kind not in HOOK_KINDS:
            raise LabconError(f"hook kind {kind!r} is not one of {', '.join(HOOK_KINDS)}")
        if scope not in HOOK_SCOPES:
            raise LabconError(f"hook scope {scope!r} is not one of {', '.join(HOOK_SCOPES)}")
        self.module, self.fn, self.kind = module, fn, kind
        self.path, self.owner, self.scope, self.id = path, owner, scope, id
        self._handle: Any = None
        self.removed = False
        if attached:
            self.attach()

    @property
    def attached(self) -> bool:
        """Whether the hook is on its module now (it then runs on every call)."""
        return self._handle is not None

    def attach(self) -> None:
        """Put the hook on its module (no-op when attached or removed)."""
        if self._handle is None and not self.removed:
            if self.kind == "forward":
                self._handle = self.module.register_forward_hook(self.fn)
            else:
                self._handle = self.module.register_full_backward_hook(self.fn)

    def detach(self) -> None:
        """Take the hook off its module until the next `attach()` (it stays registered)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def remove(self) -> None:
        """Take the hook off its module for good (idempotent)."""
        self.detach()
        self.removed = True

    def __enter__(self) -> Hook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def row(self) -> dict[str, Any]:
        """The plain-data description used by `HookRegistry.table()`."""
        return {
            "id": self.id,
            "module": self.path,
            "kind": self.kind,
            "owner": self.owner,
            "scope": self.scope,
        }

    def __repr__(self) -> str:
        state = " removed" if self.removed else ""
        return (
            f"Hook(id={self.id}, module={self.path or type(self.module).__name__!r}, kind={self.kind}{state})"
        )


class Hooks:
    """A list of Hooks (one per module, same fn); a context manager that removes them all on exit."""

    def __init__(self, modules: Iterable[nn.Module], fn: HookFn, kind: str = "forward"):
        self.hooks: list[Hook] = [Hook(m, fn, kind) for m in modules]

    def remove(self) -> None:
        """Remove every hook (idempotent)."""
        for h in self.hooks:
            h.remove()

    def __enter__(self) -> Hooks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __iter__(self) -> Iterator[Hook]:
        return iter(self.hooks)

    def __len__(self) -> int:
        return len(self.hooks)

    def __getitem__(self, i: int) -> Hook:
        return self.hooks[i]

    def __repr__(self) -> str:
        return f"Hooks({len(self.hooks)} hooks)"


class HookRegistry:
    """Every hook installed on one model, by module path, kind, owner and scope ('fit' or 'session')."""

    def __init__(self, model: nn.Module):
        self.model = model
        self._hooks: dict[int, Hook] = {}
        self._next_id = 1
        # The UI thread may add/remove hooks while the training thread removes fit-scoped ones.
        self._lock = threading.RLock()

    def module_paths(self) -> list[str]:
        """All module paths of the model ('' is the model itself)."""
        return [name for name, _ in self.model.named_modules()]

    def resolve(self, module_path: str) -> nn.Module:
        """The module at `module_path`, or a LabconError listing close matches."""
        modules = dict(self.model.named_modules())
        if module_path in modules:
            return modules[module_path]
        hint = did_you_mean(module_path, [p for p in modules if p], n=5, cutoff=0.5)
        examples = ", ".join(p for p in list(modules)[1:6])
        raise LabconError(
            f"no module {module_path!r} in the model{hint} Module paths look like: {examples} "
            "(see model.named_modules())"
        )

    def _path_of(self, module: nn.Module) -> str:
        for name, m in self.model.named_modules():
            if m is module:
                return name
        raise LabconError(
            f"{type(module).__name__} is not a submodule of the model; pass a module path instead"
        )

    def add(
        self,
        module_path: str | nn.Module,
        kind: str,
        fn: HookFn,
        owner: str,
        scope: str = "fit",
        attached: bool = True,
    ) -> Hook:
        """Install fn as a `kind` hook on the module at `module_path`; returns the Hook (with its id).

        attached=False: registered (listed, removed with its scope) but off the module until `Hook.attach()`.
        """
        if isinstance(module_path, nn.Module):
            module, path = module_path, self._path_of(module_path)
        else:
            module, path = self.resolve(module_path), module_path
        with self._lock:
            hook = Hook(
                module, fn, kind, path=path, owner=owner, scope=scope, id=self._next_id, attached=attached
            )
            self._hooks[hook.id] = hook
            self._next_id += 1
        return hook

    def remove(self, hook_id: int) -> None:
        """Remove one hook by id (LabconError naming the installed ids when it is unknown)."""
        with self._lock:
            hook = self._hooks.pop(hook_id, None)
        if hook is None:
            ids = ", ".join(str(i) for i in self._hooks) or "none"
            raise LabconError(f"no hook with id {hook_id}; installed hook ids: {ids}")
        hook.remove()

    def _remove_where(self, pred: Callable[[Hook], bool]) -> int:
        with self._lock:
            gone = [h for h in self._hooks.values() if pred(h)]
            for h in gone:
                del self._hooks[h.id]
        for h in gone:
            h.remove()
        return len(gone)

    def remove_owner(self, owner: str) -> int:
        """Remove every hook installed by `owner`; returns how many were removed."""
        return self._remove_where(lambda h: h.owner == owner)

    def remove_scope(self, scope: str) -> int:
        """Remove every hook of `scope` ('fit' at the end of each fit); returns how many were removed."""
        return self._remove_where(lambda h: h.scope == scope)

    def clear(self) -> int:
        """Remove every hook."""
        return self._remove_where(lambda h: True)

    def refresh(self) -> int:
        """Re-attach hooks whose module path now names a different module (after swap_norm); returns count."""
        modules = dict(self.model.named_modules())
        moved = 0
        with self._lock:
            for hid, h in list(self._hooks.items()):
                new = modules.get(h.path)
                if new is None:
                    # The module is gone: a hook on a detached module would silently never fire.
                    h.remove()
                    del self._hooks[hid]
                elif new is not h.module:
                    was = h.attached
                    h.remove()
                    self._hooks[hid] = Hook(
                        new, h.fn, h.kind, path=h.path, owner=h.owner, scope=h.scope, id=hid, attached=was
                    )
                    moved += 1
        return moved

    def table(self) -> list[dict[str, Any]]:
        """One plain dict per installed hook: id, module, kind, owner, scope."""
        with self._lock:
            return [h.row() for h in self._hooks.values()]

    def __len__(self) -> int:
        return len(self._hooks)

    def __iter__(self) -> Iterator[Hook]:
        with self._lock:
            return iter(list(self._hooks.values()))

    def __repr__(self) -> str:
        return f"HookRegistry({len(self._hooks)} hooks)"
