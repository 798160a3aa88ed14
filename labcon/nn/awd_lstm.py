"""AWD-LSTM (Merity et al.) as in the course: dropouts of every kind, tied weights, and the ULMFiT classifier.

Weight dropout (DropConnect on the hidden-to-hidden matrix) draws one mask per forward and runs the
whole sequence through `nn.LSTM`'s fused kernel with the dropped matrix swapped in by
`torch.func.functional_call` — no per-time-step Python loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

# Dropout defaults of fastai's language model and classifier configs (scaled by drop_mult).
LM_DROPS = {"output_p": 0.1, "hidden_p": 0.15, "input_p": 0.25, "embed_p": 0.02, "weight_p": 0.2}
CLS_DROPS = {"output_p": 0.4, "hidden_p": 0.3, "input_p": 0.4, "embed_p": 0.05, "weight_p": 0.5}


def dropout_mask(x: Tensor, size: Sequence[int], p: float) -> Tensor:
    """A Bernoulli(1-p) mask of `size`, scaled by 1/(1-p), on x's device and dtype."""
    return x.new_empty(size).bernoulli_(1 - p).div_(1 - p)


class RNNDropout(nn.Module):
    """Dropout with one mask per sequence, shared by every time step: x is (bs, seq, features)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * dropout_mask(x, (x.size(0), 1, x.size(2)), self.p)


class WeightDropout(nn.Module):
    """DropConnect on an LSTM's hidden-to-hidden weights: one mask per forward, fused kernel kept."""

    def __init__(self, module: nn.LSTM, weight_p: float, layer_names: Sequence[str] = ("weight_hh_l0",)):
        super().__init__()
        self.module, self.weight_p, self.layer_names = module, weight_p, tuple(layer_names)

    def dropped_weights(self) -> dict[str, Tensor]:
        """The weights to use in this forward (the raw ones when not training)."""
        return {n: F.dropout(getattr(self.module, n), self.weight_p, self.training) for n in self.layer_names}

    def forward(self, *args: Any) -> Any:
        if not self.training or self.weight_p == 0.0:
            return self.module(*args)
        return functional_call(self.module, self.dropped_weights(), args)


class EmbeddingDropout(nn.Module):
    """Drops whole words: rows of the embedding matrix are zeroed (and the rest scaled) per forward."""

    def __init__(self, emb: nn.Embedding, embed_p: float):
        super().__init__()
        self.emb, self.embed_p = emb, embed_p

    def forward(self, words: Tensor) -> Tensor:
        w = self.emb.weight
        if self.training and self.embed_p != 0.0:
            w = w * dropout_mask(w, (w.size(0), 1), self.embed_p)
        return F.embedding(words, w, self.emb.padding_idx, self.emb.max_norm, 2.0, False, False)


class AWDLSTM(nn.Module):
    """Embedding -> n_layers single-layer LSTMs (last one back to emb_sz) with input/hidden/weight dropout.

    `forward(x)` returns the last layer's output (bs, seq, emb_sz); the per-layer outputs before
    (`raw_outputs`) and after (`outputs`) hidden dropout are kept for AR/TAR and pooling. With
    `carry=True` (language models) the hidden state is carried across batches, detached; otherwise each
    forward starts from zeros.
    """

    initrange = 0.1

    def __init__(
        self,
        vocab_sz: int,
        emb_sz: int = 400,
        n_hid: int = 1152,
        n_layers: int = 3,
        pad_idx: int = 1,
        hidden_p: float = 0.2,
        input_p: float = 0.6,
        embed_p: float = 0.1,
        weight_p: float = 0.5,
        carry: bool = True,
    ):
        super().__init__()
        self.emb_sz, self.n_hid, self.n_layers, self.pad_idx, self.carry = (
            emb_sz,
            n_hid,
            n_layers,
            pad_idx,
            carry,
        )
        self.emb = nn.Embedding(vocab_sz, emb_sz, padding_idx=pad_idx)
        self.emb.weight.data.uniform_(-self.initrange, self.initrange)
        self.emb_dp = EmbeddingDropout(self.emb, embed_p)
        sizes = [emb_sz] + [n_hid] * (n_layers - 1) + [emb_sz]
        self.rnns = nn.ModuleList(
            [
                WeightDropout(nn.LSTM(sizes[i], sizes[i + 1], 1, batch_first=True), weight_p)
                for i in range(n_layers)
            ]
        )
        self.input_dp = RNNDropout(input_p)
        self.hidden_dps = nn.ModuleList([RNNDropout(hidden_p) for _ in range(n_layers)])
        self.hidden: list[tuple[Tensor, Tensor]] | None = None
        self.raw_outputs: list[Tensor] = []
        self.outputs: list[Tensor] = []

    def reset(self) -> None:
        """Forget the carried hidden state (start of an epoch, a validation pass, a generation)."""
        self.hidden = None

    def forward(self, x: Tensor) -> Tensor:
        bs = x.size(0)
        if not self.carry or self.hidden is None or self.hidden[0][0].size(1) != bs:
            self.hidden = None
        out = self.input_dp(self.emb_dp(x))
        new_hidden, self.raw_outputs, self.outputs = [], [], []
        for i, (rnn, hid_dp) in enumerate(zip(self.rnns, self.hidden_dps, strict=True)):
            out, h = rnn(out) if self.hidden is None else rnn(out, self.hidden[i])
            new_hidden.append(h)
            self.raw_outputs.append(out)
            if i != self.n_layers - 1:
                out = hid_dp(out)
            self.outputs.append(out)
        # Carried across batches but never back-propagated through (truncated BPTT).
        self.hidden = [(h.detach(), c.detach()) for h, c in new_hidden] if self.carry else None
        return out


class LinearDecoder(nn.Module):
    """Output dropout then a linear layer to the vocab, its weight tied to the embedding when given."""

    def __init__(
        self, n_out: int, n_hid: int, output_p: float = 0.1, tie_encoder: nn.Embedding | None = None
    ):
        super().__init__()
        self.output_dp = RNNDropout(output_p)
        self.decoder = nn.Linear(n_hid, n_out)
        self.decoder.bias.data.zero_()
        if tie_encoder is not None:
            self.decoder.weight = tie_encoder.weight
        else:
            self.decoder.weight.data.uniform_(-0.1, 0.1)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.output_dp(x))


class LanguageModel(nn.Module):
    """Encoder + decoder: (bs, seq) ids -> (bs, seq, vocab) logits; `encoder.reset()` forgets the state."""

    def __init__(self, encoder: AWDLSTM, decoder: LinearDecoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def reset(self) -> None:
        """Forget the carried hidden state."""
        self.encoder.reset()

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


def masked_concat_pool(out: Tensor, mask: Tensor) -> Tensor:
    """[last, max, mean] over the non-pad positions of out (bs, seq, nf); mask is True at padding (pad-first)."""
    keep = (~mask).unsqueeze(-1)
    lengths = keep.sum(1).clamp(min=1)
    avg = out.masked_fill(~keep, 0.0).sum(1) / lengths
    mx = out.masked_fill(~keep, float("-inf")).max(1).values
    return torch.cat([out[:, -1], mx, avg], dim=1)


class TextClassifier(nn.Module):
    """The ULMFiT classifier: AWD-LSTM encoder, masked concat pooling, BatchNorm/dropout/linear head."""

    def __init__(self, encoder: AWDLSTM, n_out: int, n_mid: int = 50, drops: Sequence[float] = (0.4, 0.1)):
        super().__init__()
        self.encoder = encoder
        nf = encoder.emb_sz * 3
        self.head = nn.Sequential(
            nn.BatchNorm1d(nf),
            nn.Dropout(drops[0]),
            nn.Linear(nf, n_mid),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(n_mid),
            nn.Dropout(drops[1]),
            nn.Linear(n_mid, n_out),
        )

    def reset(self) -> None:
        """Classifiers start every batch from a zero state; nothing is carried."""
        self.encoder.reset()

    def forward(self, x: Tensor) -> Tensor:
        out = self.encoder(x)
        return self.head(masked_concat_pool(out, x == self.encoder.pad_idx))


def awd_lstm_lm(
    vocab_sz: int,
    emb_sz: int = 400,
    n_hid: int = 1152,
    n_layers: int = 3,
    pad_idx: int = 1,
    drop_mult: float = 1.0,
    tie: bool = True,
) -> LanguageModel:
    """An AWD-LSTM language model with fastai's LM dropouts times drop_mult."""
    d = {k: v * drop_mult for k, v in LM_DROPS.items()}
    enc = AWDLSTM(
        vocab_sz, emb_sz, n_hid, n_layers, pad_idx, d["hidden_p"], d["input_p"], d["embed_p"], d["weight_p"]
    )
    return LanguageModel(enc, LinearDecoder(vocab_sz, emb_sz, d["output_p"], enc.emb if tie else None))


def awd_lstm_classifier(
    vocab_sz: int,
    n_out: int,
    emb_sz: int = 400,
    n_hid: int = 1152,
    n_layers: int = 3,
    pad_idx: int = 1,
    drop_mult: float = 1.0,
) -> TextClassifier:
    """The ULMFiT classifier with fastai's classifier dropouts times drop_mult (no state carried)."""
    d = {k: v * drop_mult for k, v in CLS_DROPS.items()}
    enc = AWDLSTM(
        vocab_sz,
        emb_sz,
        n_hid,
        n_layers,
        pad_idx,
        d["hidden_p"],
        d["input_p"],
        d["embed_p"],
        d["weight_p"],
        carry=False,
    )
    return TextClassifier(enc, n_out, drops=(d["output_p"], 0.1))


def lm_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """Parameter groups of a language model: one per LSTM layer, then embedding + (tied) decoder."""
    enc = model.encoder
    groups = [list(r.parameters()) for r in enc.rnns]
    seen = {id(p) for g in groups for p in g}
    last = [p for p in [*enc.emb.parameters(), *model.decoder.parameters()] if id(p) not in seen]
    return [*groups, list(dict.fromkeys(last))]


def classifier_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """Parameter groups of the classifier: embedding, each LSTM layer, then the head (unfreeze from the end)."""
    enc = model.encoder
    return [
        list(enc.emb.parameters()),
        *(list(r.parameters()) for r in enc.rnns),
        list(model.head.parameters()),
    ]


class PlainLSTMLM(nn.Module):
    """A plain nn.LSTM language model of the same shape (no dropouts): the speed baseline."""

    def __init__(self, vocab_sz: int, emb_sz: int = 400, n_hid: int = 1152, n_layers: int = 3):
        super().__init__()
        self.emb = nn.Embedding(vocab_sz, emb_sz)
        self.rnns = nn.ModuleList(
            [
                nn.LSTM(a, b, 1, batch_first=True)
                for a, b in zip(
                    [emb_sz] + [n_hid] * (n_layers - 1), [n_hid] * (n_layers - 1) + [emb_sz], strict=True
                )
            ]
        )
        self.decoder = nn.Linear(emb_sz, vocab_sz)
        self.decoder.weight = self.emb.weight

    def forward(self, x: Tensor) -> Tensor:
        out = self.emb(x)
        for r in self.rnns:
            out, _ = r(out)
        return self.decoder(out)
