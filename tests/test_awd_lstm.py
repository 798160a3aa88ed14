"""AWD-LSTM: LSTM maths against a hand-written cell and nn.LSTM, dropouts, tied weights, AR/TAR, state."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from labcon.core.callbacks.rnn import RNNTrainer
from labcon.core.runner import Runner
from labcon.data.loaders import DataLoaders
from labcon.nn.awd_lstm import (
    AWDLSTM,
    EmbeddingDropout,
    RNNDropout,
    WeightDropout,
    awd_lstm_classifier,
    awd_lstm_lm,
    classifier_splitter,
    lm_splitter,
    masked_concat_pool,
)
from labcon.nn.transfer import SPLITTERS, check_groups


def _cell_loop(lstm: nn.LSTM, x: torch.Tensor, w_hh: torch.Tensor | None = None, state=None) -> tuple:
    """The course's LSTM cell, step by step: i, f, g, o gates from ih and hh products."""
    w_ih, b = lstm.weight_ih_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0
    w_hh = lstm.weight_hh_l0 if w_hh is None else w_hh
    bs, nh = x.size(0), lstm.hidden_size
    h, c = state if state is not None else (x.new_zeros(bs, nh), x.new_zeros(bs, nh))
    outs = []
    for t in range(x.size(1)):
        gates = x[:, t] @ w_ih.T + h @ w_hh.T + b
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, 1), (h, c)


def _no_drop_encoder(**kw) -> AWDLSTM:
    return AWDLSTM(50, 8, 12, 3, pad_idx=1, hidden_p=0.0, input_p=0.0, embed_p=0.0, weight_p=0.0, **kw)


def test_lstm_maths_match_hand_cell_and_nn_lstm() -> None:
    torch.manual_seed(0)
    enc = _no_drop_encoder().train()  # dropouts off, training mode: the same path as training
    x = torch.randint(0, 50, (3, 7))
    out = enc(x)
    ref = enc.emb(x)
    for layer in enc.rnns:
        ref, _ = _cell_loop(layer.module, ref)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    ref2 = enc.emb(x)
    for layer in enc.rnns:
        ref2, _ = layer.module(ref2)
    torch.testing.assert_close(out, ref2, rtol=1e-5, atol=1e-6)
    assert [r.shape[-1] for r in enc.raw_outputs] == [12, 12, 8]


def test_hidden_state_carried_across_batches_and_reset() -> None:
    torch.manual_seed(0)
    enc = _no_drop_encoder().eval()
    x = torch.randint(0, 50, (2, 10))
    full = enc(x)
    enc.reset()
    halves = torch.cat([enc(x[:, :5]), enc(x[:, 5:])], 1)  # state carried from the first half
    torch.testing.assert_close(halves, full, rtol=1e-5, atol=1e-6)
    enc.reset()
    assert not torch.allclose(enc(x[:, 5:]), full[:, 5:])
    cls = _no_drop_encoder(carry=False).eval()
    cls.load_state_dict(enc.state_dict())
    a, b = cls(x[:, 5:]), cls(x[:, 5:])
    torch.testing.assert_close(a, b)  # a classifier's encoder starts each batch from zeros


def test_weight_dropout_one_mask_per_forward() -> None:
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 6, batch_first=True)
    wd = WeightDropout(lstm, weight_p=0.5).train()
    raw = lstm.weight_hh_l0.detach().clone()
    x = torch.randn(2, 9, 4)
    torch.manual_seed(123)
    out, _ = wd(x)
    torch.manual_seed(123)
    dropped = F.dropout(raw, 0.5, True)  # the one mask this forward drew
    ref, _ = _cell_loop(lstm, x, w_hh=dropped)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert (dropped == 0).float().mean() > 0.3
    assert torch.equal(lstm.weight_hh_l0.detach(), raw)  # the raw weight itself is untouched
    out.sum().backward()
    g = lstm.weight_hh_l0.grad
    assert g is not None and torch.all(g[dropped == 0] == 0) and g.abs().sum() > 0
    wd.eval()
    torch.testing.assert_close(wd(x)[0], lstm(x)[0])  # no dropout when evaluating


def test_embedding_dropout_drops_whole_words_and_rnn_dropout_shares_mask() -> None:
    torch.manual_seed(0)
    emb = nn.Embedding(20, 5, padding_idx=1)
    ed = EmbeddingDropout(emb, 0.5).train()
    words = torch.arange(20).repeat(3, 1)
    out = ed(words)
    zero = (out == 0).all(-1)
    assert zero.any() and torch.equal(zero[0], zero[1])  # a dropped word is dropped everywhere
    kept = ~zero[0]
    torch.testing.assert_close(out[0][kept], emb.weight[kept] * 2)
    rd = RNNDropout(0.5).train()
    y = rd(torch.ones(4, 7, 3))
    assert torch.equal(y, y[:, :1].expand_as(y))  # one mask for every time step


def test_tied_weights_and_splitters() -> None:
    lm = awd_lstm_lm(30, 8, 12, 2, pad_idx=1)
    assert lm.decoder.decoder.weight is lm.encoder.emb.weight
    groups = lm_splitter(lm)
    assert len(groups) == 3 and sum(len(g) for g in groups) == len(list(lm.parameters()))
    clf = awd_lstm_classifier(30, 2, 8, 12, 2, pad_idx=1)
    cg = classifier_splitter(clf)
    assert len(cg) == 4 and sum(len(g) for g in cg) == len(list(clf.parameters()))
    check_groups(lm, groups)  # every parameter in exactly one group (the tied weight once)
    check_groups(clf, cg)
    assert SPLITTERS["awd_lstm_lm"] is lm_splitter and SPLITTERS["awd_lstm_classifier"] is classifier_splitter


def test_masked_concat_pool_ignores_padding() -> None:
    torch.manual_seed(0)
    out = torch.randn(2, 5, 3)
    mask = torch.tensor([[True, True, False, False, False], [False] * 5])
    pooled = masked_concat_pool(out, mask)
    real = out[0, 2:]
    torch.testing.assert_close(pooled[0], torch.cat([out[0, -1], real.max(0).values, real.mean(0)]))
    torch.testing.assert_close(pooled[1], torch.cat([out[1, -1], out[1].max(0).values, out[1].mean(0)]))


class _Batches:
    def __init__(self, batches: list) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def test_ar_tar_added_to_backward_loss_and_state_reset() -> None:
    torch.manual_seed(0)
    lm = awd_lstm_lm(30, 8, 12, 2, pad_idx=1)
    x = torch.randint(0, 30, (4, 6))
    dls = DataLoaders(_Batches([(x, x)]), _Batches([(x, x)]))
    cb = RNNTrainer(alpha=2.0, beta=1.0)
    seen: dict[str, float] = {}

    class Spy(RNNTrainer):
        order = 1
        cb_name = "spy"

        def after_loss(self) -> None:
            r = self.runner
            if r.training:
                enc = r.model.encoder
                ar = 2.0 * enc.outputs[-1].pow(2).mean()
                h = enc.raw_outputs[-1]
                tar = (h[:, 1:] - h[:, :-1]).pow(2).mean()
                seen["extra"] = float((r.loss_grad - r.loss).detach())
                seen["want"] = float((ar + tar).detach())

        def before_validate(self) -> None:
            seen["hidden_at_valid"] = self.runner.model.encoder.hidden is None

    r = Runner(lm, dls, lr=1e-3, cbs=[cb, Spy()], device="cpu")
    r.fit(1)
    assert abs(seen["extra"] - seen["want"]) < 1e-5 and seen["want"] > 0
    assert seen["hidden_at_valid"]  # reset before the validation pass


def test_generate_restores_state_and_detokenize_recases() -> None:
    from labcon.data.text_vocab import Vocab
    from labcon.nn.generate import detokenize, generate

    vocab = Vocab(["xxunk", "xxpad", "xxbos", "xxeos", "xxmaj", "xxup", "the", "film", "was", "good", "."])
    lm = awd_lstm_lm(len(vocab), 8, 12, 2, pad_idx=1).train()
    lm(torch.randint(0, len(vocab), (1, 4)))
    carried = lm.encoder.hidden
    out = generate(lm, vocab, ["xxbos", "the", "film", "xxeos"], n=7, temperature=0.5, seed=3)
    assert len(out) == 7 and not {"xxunk", "xxpad"} & set(out)
    assert generate(lm, vocab, ["xxbos", "the", "film"], n=7, temperature=0.5, seed=3) == out
    assert lm.training and lm.encoder.hidden is carried  # training's state untouched
    assert (
        detokenize(["xxbos", "xxmaj", "the", "film", "xxup", "was", "good", ".", "xxeos"])
        == "The film WAS good."
    )
