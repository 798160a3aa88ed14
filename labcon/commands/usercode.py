"""Callbacks from the user's own files (`cb add path/to/file.py:Class`): the exact bytes that were hashed run."""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.util
import sys
from pathlib import Path

from labcon.core.events import Callback
from labcon.errors import CommandError


def code_path(spec: str) -> Path:
    """The file named by `path/to/file.py:ClassName` (resolved; CommandError when it is not a .py file)."""
    path_s, _, cls_name = spec.rpartition(":")
    if not path_s or not cls_name:
        raise CommandError(f"'{spec}' is not path/to/file.py:ClassName")
    path = Path(path_s).expanduser().resolve()
    if path.suffix != ".py":
        raise CommandError(f"'{path_s}' is not a .py file; give path/to/file.py:ClassName")
    if not path.is_file():
        raise CommandError(f"no file '{path_s}'; give path/to/file.py:ClassName")
    return path


def code_sha256(spec: str) -> str:
    """SHA-256 of the file a `file.py:Class` spec names (what the journal records when it is first added)."""
    return hashlib.sha256(code_path(spec).read_bytes()).hexdigest()


class _PinnedLoader(importlib.abc.SourceLoader):
    """Runs the bytes it was given (those that were hashed), never a later version of the file or a cached .pyc."""

    def __init__(self, path: Path, source: bytes):
        self.path, self.source = path, source

    def get_filename(self, fullname: str) -> str:
        return str(self.path)

    def get_data(self, path: str) -> bytes:
        return self.source


def load_callback_class(spec: str, sha256: str | None = None) -> type[Callback]:
    """Load `ClassName` from `path/to/file.py:ClassName` (runs that file: only for the user's own code).

    With `sha256`, the file must still hash to it (the value journaled when it was first added)."""
    path = code_path(spec)
    path_s, _, cls_name = spec.rpartition(":")
    source = path.read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    if sha256 is not None and digest != sha256:
        raise CommandError(
            f"'{path}' changed since it was added (sha256 {digest[:12]}..., journaled {sha256[:12]}...); "
            f"refusing to run it. Restore that file, or `cb add {spec}` again to use the new code"
        )
    mod_name = f"labcon_user_callbacks.{path.stem}_{digest[:10]}"
    loader = _PinnedLoader(path, source)
    loader_spec = importlib.util.spec_from_loader(mod_name, loader, origin=str(path))
    if loader_spec is None:
        raise CommandError(f"cannot load '{path_s}' as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    # Registered before running so dataclasses/pickling inside the file can find their module.
    sys.modules[mod_name] = module
    try:
        loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(mod_name, None)
        raise CommandError(f"error loading '{path_s}': {type(e).__name__}: {e}") from e
    cls = getattr(module, cls_name, None)
    if cls is None:
        found = sorted(
            n
            for n, o in vars(module).items()
            if isinstance(o, type) and issubclass(o, Callback) and o is not Callback
        )
        raise CommandError(
            f"no class '{cls_name}' in '{path_s}'; callbacks defined there: {', '.join(found) or '(none)'}"
        )
    if not (isinstance(cls, type) and issubclass(cls, Callback)):
        raise CommandError(f"'{cls_name}' in '{path_s}' is not a Callback; subclass labcon.Callback")
    return cls
