"""TARGET, the argument of `labcon run | open | serve | repl`: one function says what it names.

A TARGET is, in this order: nothing (the built-in dataset's default session), a config file (*.toml), a dataset
preset (shapes, mnist_tiny, imagenette, imagewoof; text: pydoc, pydoc_cls), a saved session's name, or a data folder (train/ and valid/
subfolders, one folder per class).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from labcon.errors import LabconError
from labcon.session.config import Config, load_config, parse_config
from labcon.session.paths import (
    DEFAULT_SESSION,
    config_file,
    expand_user,
    sessions_home,
    validate_session_name,
)


@dataclass(frozen=True)
class Target:
    """What a TARGET names: its kind, the session it opens, and the config to build (None: a saved session)."""

    kind: str  # "default" | "config" | "preset" | "session" | "folder"
    name: str
    config: Config | None = None
    path: Path | None = None  # the config file or the data folder

    @property
    def argument(self) -> str | None:
        """TARGET as another process (the session process `labcon open` starts) must be given it."""
        if self.path is not None:
            return str(self.path.resolve())
        return None if self.kind == "default" else self.name


def resolve_target(
    target: str | os.PathLike[str] | None, home: str | os.PathLike[str] | None = None
) -> Target:
    """What `target` names (see the module docstring); a clear error naming the four kinds when it is none."""
    from labcon.data.datasets import PRESETS
    from labcon.session.build_text import TEXT_RUN_PRESETS

    home = sessions_home(home)
    if target is None:
        return Target(
            "default",
            DEFAULT_SESSION,
            parse_config("", source="<built-in defaults>").replace(name=DEFAULT_SESSION),
        )
    text = str(target)
    path = config_file(text)
    if path is not None:
        config = load_config(path)
        return Target("config", config.name, config, path)
    folder = expand_user(text, "the target")
    if text in TEXT_RUN_PRESETS and not folder.is_dir():
        return Target("preset", text, parse_config(TEXT_RUN_PRESETS[text], source=f"<preset {text}>"))
    if text in PRESETS and not folder.is_dir():
        config = parse_config(f'name = "{text}"\n[data]\npreset = "{text}"\n', source=f"<preset {text}>")
        return Target("preset", text, config)
    if _is_name(text) and (home / text / "session.toml").is_file():
        return Target("session", text)
    if folder.is_dir():
        return Target("folder", _folder_name(folder), folder_config(folder), folder)
    if text == DEFAULT_SESSION:
        return resolve_target(None, home)
    raise LabconError(
        f"{text!r} is not a config file, a preset ({', '.join([*PRESETS, *TEXT_RUN_PRESETS])}), a session under {home} or a data "
        f"folder; give one of those (saved sessions: `ls {home}`)"
    )


def folder_config(folder: Path) -> Config:
    """A session config for an image folder: train/valid subfolders when it has them (else a random 20 %
    split), labels from each image's parent folder."""
    subs = {d.name for d in folder.iterdir() if d.is_dir()}
    valid = next((v for v in ("valid", "val", "validation", "test") if v in subs), None)
    split = (
        f'{{kind = "grandparent", train = "train", valid = "{valid}"}}'
        if "train" in subs and valid
        else '{kind = "random", valid_pct = 0.2, seed = 0}'
    )
    text = (
        f'name = "{_folder_name(folder)}"\n[data]\npath = "{folder.resolve()}"\nsplitter = {split}\n'
        'labeller = "parent"\n'
    )
    return parse_config(text, source=f"<folder {folder}>")


def _is_name(text: str) -> bool:
    try:
        validate_session_name(text)
    except LabconError:
        return False
    return True


def _folder_name(folder: Path) -> str:
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in folder.resolve().name)[:64]
    return name if name and name[0].isalnum() else f"data{name}"[:64]
