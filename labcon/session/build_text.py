"""Build a text session: TextBlock (tokens cached and vocab kept in the session folder), AWD-LSTM, Runner.

ULMFiT: a language-model session writes its encoder and vocab to `<session>/encoder.pt` after every
fit; a classifier config names that file (`[model] encoder = ".../encoder.pt"`), which fixes the
classifier's vocab to the LM's and loads the encoder weights.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from labcon.core.callbacks.guards import GradientClip
from labcon.core.callbacks.rnn import RNNTrainer
from labcon.core.events import Callback
from labcon.core.metrics import METRICS
from labcon.data.text_block import TextBlock
from labcon.data.text_config import text_block_from_config
from labcon.data.text_vocab import Vocab
from labcon.errors import CheckpointError, ConfigError
from labcon.nn.awd_lstm import awd_lstm_classifier, awd_lstm_lm, classifier_splitter, lm_splitter
from labcon.session.config import Config, add_location

ENCODER_FORMAT = 1
DEFAULT_SIZES = {"emb_sz": 400, "n_hid": 1152, "n_layers": 3}
TEXT_CLIP = 0.1  # the course's gradient clipping for AWD-LSTM when [train] grad_clip is not set


def is_text(config: Config) -> bool:
    """Whether the config's data is text (kind = text_lm | text_cls)."""
    return str(config.data.raw.get("kind", "")).startswith("text_")


def text_block(config: Config, session_dir: Path | None = None) -> TextBlock:
    """The TextBlock of config.data; its tokens are cached and its vocab kept under session_dir/text."""
    text_dir = session_dir / "text" if session_dir is not None else None
    try:
        return text_block_from_config(
            dict(config.data.raw),
            config.base_dir,
            seed=config.seed,
            cache_dir=text_dir,
            vocab_file=text_dir / "vocab.json" if text_dir is not None else None,
        )
    except ConfigError as e:
        raise add_location(e, config) from None


def save_encoder(model: nn.Module, vocab: Vocab, path: Path, meta: dict[str, Any]) -> None:
    """Write a language model's encoder weights, its vocab, sizes and origin (weights-only loadable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.encoder.state_dict().items()}
    tmp = path.with_suffix(".pt.tmp")
    torch.save({"format": ENCODER_FORMAT, "vocab": list(vocab.itos), "encoder": state, **meta}, tmp)
    tmp.replace(path)


def load_encoder(path: Path) -> dict[str, Any]:
    """Read an encoder file written by save_encoder, with a clear error for anything else."""
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(
            f"encoder file {path} does not exist; train the language model session first"
        ) from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not an encoder file"
        raise CheckpointError(f"cannot read encoder file {path}: {e}") from None
    if not isinstance(d, dict) or d.get("format") != ENCODER_FORMAT or "encoder" not in d:
        raise CheckpointError(f"{path} is not a labcon encoder file (format {ENCODER_FORMAT})")
    return d


class EncoderSaver(Callback):
    """After every fit of a language model, writes encoder + vocab to `path` for a classifier to start from."""

    order = 95
    run_in_probe = False

    def __init__(self, path: Path, vocab: Vocab, sizes: dict[str, int]):
        self.path, self.vocab, self.sizes = path, vocab, sizes
        # The journal run that trained it (set by the session), so a classifier's run can link to it.
        self.origin: Callable[[], dict[str, Any]] = dict

    def after_fit(self) -> None:
        model = getattr(self.runner.model, "module", self.runner.model)
        save_encoder(model, self.vocab, self.path, {**self.sizes, **self.origin()})


def link_text_runs(session: Any) -> None:
    """Journal links: an LM session's encoder file names its run; a classifier built on it records that run
    as its parent (when both sessions share a journal)."""
    journal = str((session.home / "journal.db").resolve())
    saver = session.runner.cb("encoder_saver")
    if saver is not None:
        saver.origin = lambda: {"run_id": session.persist.run_id or 0, "journal": journal}
    origin = getattr(session.dls, "lm_origin", None) or {}
    if origin.get("run_id") and origin.get("journal") == journal:
        session.persist.parent_id = int(origin["run_id"])


def build_text(
    config: Config, device: torch.device, session_dir: Path | None, rank: int = 0
) -> tuple[Any, Any, nn.Module, dict[str, Any]]:
    """(block, dls, model, runner keyword arguments + callbacks) for a text config."""
    m = config.model
    if m.arch not in ("awd_lstm", "simple_cnn"):
        raise ConfigError(f"model.arch = {m.arch!r} is an image model; text data uses arch = 'awd_lstm'")
    block = text_block(config, session_dir)
    sizes = {k: getattr(m, k) or v for k, v in DEFAULT_SIZES.items()}
    enc_state = None
    if m.encoder:
        p = Path(m.encoder)
        enc = load_encoder(p if p.is_absolute() else Path(config.base_dir) / p)
        block.vocab = Vocab(enc["vocab"])
        sizes = {k: int(enc.get(k, v)) for k, v in sizes.items()}  # the LM's shape wins
        enc_state = enc["encoder"]
    dls = block.dataloaders(seed=config.seed)
    if enc_state is not None:
        dls.lm_origin = {"run_id": int(enc.get("run_id", 0)), "journal": str(enc.get("journal", ""))}
    vocab, drop = dls.vocab, m.drop_mult if m.drop_mult is not None else 1.0
    if block.kind == "text_lm":
        model: nn.Module = awd_lstm_lm(len(vocab), pad_idx=vocab.pad, drop_mult=drop, **sizes)
        splitter = ("awd_lstm_lm", lm_splitter)
    else:
        model = awd_lstm_classifier(len(vocab), dls.c, pad_idx=vocab.pad, drop_mult=drop, **sizes)
        splitter = ("awd_lstm_classifier", classifier_splitter)
    if enc_state is not None:
        try:
            model.encoder.load_state_dict(enc_state)
        except RuntimeError as e:
            raise CheckpointError(f"encoder file {m.encoder} does not fit this model: {e}") from None
    metrics = [METRICS[n] for n in config.train.metrics]
    if block.kind == "text_lm" and METRICS["perplexity"] not in metrics:
        metrics.append(METRICS["perplexity"])
    cbs: list[Callback] = [RNNTrainer()]
    if not config.train.grad_clip:
        cbs.append(GradientClip(TEXT_CLIP))
    if block.kind == "text_lm" and session_dir is not None and rank == 0:
        cbs.append(EncoderSaver(session_dir / "encoder.pt", vocab, sizes))
    return block, dls, model, {"metrics": metrics, "splitter": splitter, "cbs": cbs}


_SMALL = '[model]\narch = "awd_lstm"\nemb_sz = 64\nn_hid = 128\nn_layers = 2\n'
# `labcon run pydoc` / `labcon run pydoc_cls`: the built-in corpus with a model small enough for a CPU.
TEXT_RUN_PRESETS: dict[str, str] = {
    "pydoc": 'name = "pydoc"\n[data]\nkind = "text_lm"\npreset = "pydoc"\nmax_vocab = 4000\nbs = 32\nbptt = 50\n'
    + _SMALL
    + '[train]\nepochs = 2\nlr = 1e-2\nmetrics = ["accuracy"]\n',
    "pydoc_cls": 'name = "pydoc_cls"\n[data]\nkind = "text_cls"\npreset = "pydoc"\nmax_vocab = 4000\nbs = 32\n'
    + _SMALL
    + '[train]\nepochs = 2\nlr = 1e-2\nmetrics = ["accuracy"]\n',
}
