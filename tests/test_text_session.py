"""Text sessions: [data] kind = text_lm | text_cls through the real Session — cache, vocab, perplexity, ULMFiT."""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

import pytest

from labcon.errors import ConfigError
from labcon.session.build_text import load_encoder
from labcon.session.config import parse_config
from labcon.session.session import Session

GOOD = ["good", "great", "wonderful", "fine", "lovely"]
BAD = ["bad", "awful", "boring", "poor", "dull"]


def _corpus(path: Path, n: int = 80) -> Path:
    rng = random.Random(0)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["label", "text", "is_valid"])
        for i in range(n):
            pos = i % 2 == 0
            words = GOOD if pos else BAD
            text = " ".join(
                f"The film was {rng.choice(words)} and the cast was {rng.choice(words)}." for _ in range(3)
            )
            w.writerow(["pos" if pos else "neg", text, i % 5 == 4])
    return path


def _config(data: Path, kind: str, name: str, extra: str = "") -> str:
    return f"""
name = "{name}"
seed = 1
[data]
kind = "{kind}"
path = "{data}"
valid_col = "is_valid"
min_freq = 1
bs = 8
bptt = 12
[model]
arch = "awd_lstm"
emb_sz = 16
n_hid = 24
n_layers = 2
{extra}
[train]
epochs = 1
lr = 1e-2
device = "cpu"
[telemetry]
every = 2
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _corpus(tmp_path_factory.mktemp("txt") / "texts.csv")


def test_lm_session_perplexity_cache_vocab_and_encoder(corpus: Path, tmp_path: Path) -> None:
    s = Session(parse_config(_config(corpus, "text_lm", "lm")), tmp_path)
    assert not s.block.check().from_cache
    summary = s.data_summary()
    for stage in ("raw", "tokens", "ids", "decoded", "xxbos"):
        assert stage in summary
    assert s.submit("fit 2").ok
    assert s.wait(300)
    hist = s.history()
    assert len(hist) == 2
    for row in hist:
        assert math.isclose(row["perplexity"], math.exp(row["valid_loss"]), rel_tol=1e-4)
    assert hist[-1]["valid_loss"] < hist[0]["valid_loss"]
    snap = s.telemetry_snapshot()
    assert snap is not None and any("rnns" in layer for layer in snap.layers)  # LSTM layers are watched
    vocab = s.dls.vocab
    reply = s.submit('predict "The film was" n=6 temperature=0.8 seed=0')
    assert reply.ok, reply.text
    assert reply.text.startswith("The film was") and len(reply.text.split()) > 3
    assert s.submit('predict "The film was" n=6 seed=0').text == reply.text  # seeded: repeatable
    assert not s.submit('predict "x" temperature=0').ok
    s.close()
    enc_file = tmp_path / "lm" / "encoder.pt"
    assert enc_file.is_file() and (tmp_path / "lm" / "text" / "vocab.json").is_file()
    again = Session.resume("lm", tmp_path)
    assert again.block.check().from_cache  # tokenised once, read back
    assert again.dls.vocab == vocab
    assert again.history() == hist
    again.close()
    enc = load_encoder(enc_file)
    assert enc["vocab"] == vocab.itos


def test_classifier_from_lm_encoder_with_gradual_unfreezing_groups(corpus: Path, tmp_path: Path) -> None:
    lm = Session(parse_config(_config(corpus, "text_lm", "lm2")), tmp_path)
    assert lm.submit("fit 1").ok and lm.wait(300)
    lm_vocab, lm_run = lm.dls.vocab, lm.persist.run_id
    enc_state = {k: v.clone() for k, v in lm.runner.model.encoder.state_dict().items()}
    lm.close()
    enc = tmp_path / "lm2" / "encoder.pt"
    cfg = _config(corpus, "text_cls", "cls", extra=f'encoder = "{enc}"')
    s = Session(parse_config(cfg), tmp_path)
    assert s.dls.vocab == lm_vocab  # the classifier reads ids the way its LM did
    assert lm_run and s.persist.parent_id == lm_run  # the journal links the classifier's run to the LM's
    for k, v in s.runner.model.encoder.state_dict().items():
        assert (v == enc_state[k]).all(), k
    assert len(s.runner.hyper("lr")) == 4  # embedding, 2 LSTM layers, head: discriminative lrs
    assert s.submit("freeze").ok  # gradual unfreezing: the head alone first
    model = s.runner.model
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for n, p in model.head.named_parameters())
    assert s.submit("unfreeze_to 2").ok  # then the last LSTM layer too
    assert all(p.requires_grad for p in model.encoder.rnns[1].parameters())
    assert not any(p.requires_grad for p in model.encoder.rnns[0].parameters())
    assert s.submit("set lr=1e-4,1e-4,1e-3,1e-2").ok
    assert s.runner.hyper("lr") == [1e-4, 1e-4, 1e-3, 1e-2]
    assert s.submit("unfreeze").ok
    x, y = s.dls.one_batch()
    assert x.dtype.is_floating_point is False and y.max() <= 1
    assert s.submit("fit 1").ok and s.wait(300)
    assert "accuracy" in s.history()[-1]
    s.close()


def test_bad_text_config_is_named(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.bptt"):
        Session(parse_config(_config(corpus, "text_lm", "bad").replace("bptt = 12", "bptt = 0")), tmp_path)
    with pytest.raises(ConfigError, match="data.kind"):
        Session(parse_config(_config(corpus, "text_xx", "bad2")), tmp_path)
    cfg = _config(corpus, "text_cls", "bad3").replace(
        'valid_col = "is_valid"', 'valid_col = "is_valid"\ntext_col = "body"'
    )
    with pytest.raises(Exception, match="no column 'body'"):
        Session(parse_config(cfg), tmp_path)
