"""Text data: tokeniser rules, process pool, cache, vocab, LM and classifier batches, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from labcon.data import text_tokenize as tt
from labcon.data.text_block import TextBlock
from labcon.data.text_loaders import ClsLoader, LMLoader
from labcon.data.text_sources import CsvSource, FileSource, FolderSource
from labcon.data.text_vocab import Vocab
from labcon.errors import DataError

SAMPLES = [
    "Hello WORLD!!!! It was sooooo good good good good.<br /><br />Tom &amp; Jerry",
    "A plain sentence, with a comma. And another one.",
    "xxbos is a special token, and so is xxunk here; see a/b #tag",
    "I LOVED this film. Loved it!",
    "Short.",
    "The end of the list of texts that we tokenise in tests.",
]


def test_rules_follow_the_course() -> None:
    toks = tt.Tokenizer().tokenize_one(SAMPLES[0])
    assert toks[0] == tt.BOS and toks[-1] == tt.EOS
    assert toks[1:3] == [tt.TK_MAJ, "hello"]
    assert toks[3:5] == [tt.TK_UP, "world"]
    assert toks[5:8] == [tt.TK_REP, "4", "!"]
    assert [tt.TK_REP, "5", "o"] == toks[toks.index("s") + 1 : toks.index("s") + 4]
    assert [tt.TK_WREP, "4", "good"] == toks[toks.index(tt.TK_WREP) : toks.index(tt.TK_WREP) + 3]
    assert "\n" in toks and "<" not in toks and "br" not in toks  # <br /> became a newline
    assert "&" in toks and "amp" not in toks and ";" not in toks  # HTML entity fixed
    mixed = tt.Tokenizer().tokenize_one("Awful awful AWFUL awful.")
    assert mixed[1:5] == [tt.TK_WREP, "4", tt.TK_MAJ, "awful"]  # repetition whatever the case


def test_special_tokens_kept_whole_and_slash_hash_split() -> None:
    toks = tt.Tokenizer().tokenize_one(SAMPLES[2])
    assert toks[:2] == [tt.BOS, tt.BOS]  # the text's own xxbos is one token, not x x b o s
    assert tt.UNK in toks
    assert ["a", "/", "b"] == toks[toks.index("/") - 1 : toks.index("/") + 2]
    assert ["#", "tag"] == toks[toks.index("#") : toks.index("#") + 2]


def test_two_workers_give_identical_tokens() -> None:
    texts = SAMPLES * 5
    one = tt.tokenize_texts(texts, n_workers=1, chunk=4)
    two = tt.tokenize_texts(texts, n_workers=2, chunk=4)
    assert one == two and len(one) == len(texts)


def test_cache_reused_and_invalidated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tok = tt.Tokenizer(cache_dir=tmp_path)
    first = tok(SAMPLES)
    assert not tok.last_from_cache
    assert tok(SAMPLES) == first and tok.last_from_cache
    changed = [*SAMPLES[:-1], SAMPLES[-1] + " More."]
    tok(changed)
    assert not tok.last_from_cache  # texts changed

    def shout(t: str) -> str:
        return t.upper()

    monkeypatch.setattr(tt, "PRE_RULES", (*tt.PRE_RULES, shout))
    tok(SAMPLES)
    assert not tok.last_from_cache  # rules changed
    assert len(list(tmp_path.glob("tokens-*.txt"))) == 3


def test_vocab_limits_and_round_trip(tmp_path: Path) -> None:
    docs = tt.tokenize_texts(["a a a b b c", "a b d"])
    v = Vocab.build(docs, max_vocab=len(tt.SPECIAL_TOKENS) + 2, min_freq=2)
    assert v.itos[: len(tt.SPECIAL_TOKENS)] == list(tt.SPECIAL_TOKENS)
    assert v.itos[len(tt.SPECIAL_TOKENS) :] == ["a", "b"]  # c, d too rare; max_vocab caps the rest
    ids = v.numericalize(docs[1])
    assert v.decode(ids) == [tt.BOS, "a", "b", tt.UNK, tt.EOS]
    v.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json") == v
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="delete it"):
        Vocab.load(tmp_path / "bad.json")


def _docs(n: int = 30, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.arange(k * 1000, k * 1000 + int(rng.integers(5, 60)), dtype=np.int32) for k in range(n)]


def test_lm_batches_stream_shift_and_shuffle() -> None:
    docs = _docs()
    dl = LMLoader(docs, bs=4, bptt=10, shuffle=True, seed=1)
    first, windows = dl.stream(), dl.windows()
    batches = list(dl)
    assert len(batches) == len(windows) and dl.epoch == 1
    lens = {x.shape[1] for x, _ in batches}
    assert len(lens) > 1 and all(x.shape[0] == 4 for x, _ in batches)  # randomised bptt
    x = torch.cat([b[0] for b in batches], 1)
    y = torch.cat([b[1] for b in batches], 1)
    assert torch.equal(x, first[:, : x.shape[1]]) and torch.equal(y, first[:, 1 : x.shape[1] + 1])
    assert x.shape[1] == first.shape[1] - 1  # the whole stream is used
    assert not torch.equal(dl.stream(), first)  # epoch 1 has another document order
    dl.set_epoch(0)
    assert torch.equal(dl.stream(), first)  # (seed, epoch) fixes the order
    valid = LMLoader(docs, bs=4, bptt=10, shuffle=False)
    assert {x.shape[1] for x, _ in list(valid)[:-1]} == {10}
    assert torch.equal(valid.stream().flatten()[:20], torch.from_numpy(np.concatenate(docs)[:20]).long())


def test_classifier_batches_sortish_pad_first() -> None:
    docs = _docs(200)
    labels = [i % 2 for i in range(200)]
    dl = ClsLoader(docs, labels, bs=8, pad_idx=1, shuffle=True, seed=0)
    batches = list(dl)
    longest = max(len(d) for d in docs)
    assert batches[0][0].shape[1] == longest  # longest batch first
    x, y = batches[3]
    n_pad = (x == 1).sum(1)
    for row, p in zip(x, n_pad, strict=True):
        assert (row[: int(p)] == 1).all() and (row[int(p) :] != 1).all()  # padding first
    spread = [int((b[0] != 1).sum(1).max() - (b[0] != 1).sum(1).min()) for b in batches]
    assert np.mean(spread) < 20  # similar lengths together (random order would give ~40)
    assert sorted(int(v) for b in batches for v in b[1]) == sorted(labels)  # nothing dropped
    valid = ClsLoader(docs, labels, bs=8, pad_idx=1, shuffle=False)
    widths = [b[0].shape[1] for b in valid]
    assert widths == sorted(widths, reverse=True)


def _csv(path: Path, rows: list[str], header: str = "label,text,is_valid") -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _rows(n: int = 12) -> list[str]:
    return [
        f"{'pos' if i % 2 else 'neg'},Text number {i} is {'good' if i % 2 else 'bad'}.,{i >= n - 4}"
        for i in range(n)
    ]


def test_text_block_from_csv(tmp_path: Path) -> None:
    f = _csv(tmp_path / "t.csv", _rows())
    block = TextBlock(
        "text_cls",
        CsvSource(f, "text", "label", "is_valid"),
        bs=4,
        min_freq=1,
        vocab_file=tmp_path / "v.json",
    )
    dls = block.dataloaders()
    assert dls.classes == ["neg", "pos"] and dls.c == 2
    assert len(dls.train.docs) == 8 and len(dls.valid.docs) == 4
    rep = block.summary()
    assert "raw" in rep and "tokens" in rep and "ids" in rep and "decoded" in rep
    again = TextBlock(
        "text_cls",
        CsvSource(f, "text", "label", "is_valid"),
        bs=4,
        min_freq=5,
        vocab_file=tmp_path / "v.json",
    )
    assert again.dataloaders().vocab == dls.vocab  # restored from the file, not rebuilt


@pytest.mark.parametrize(
    ("rows", "header", "kw", "match"),
    [
        (["neg,,False", "pos,fine,True"], None, {}, "row 2: column 'text' is empty"),
        (_rows(), None, {"text_col": "review"}, "no column 'review'.*columns: label, text, is_valid"),
        ([r.replace("pos", "neg") for r in _rows()], None, {}, "one class"),
        (_rows(), None, {"valid_col": "label"}, "row 2: column 'label' holds 'neg'"),
    ],
)
def test_bad_csv_is_named(tmp_path: Path, rows: list[str], header: str | None, kw: dict, match: str) -> None:
    f = _csv(tmp_path / "t.csv", rows, header or "label,text,is_valid")
    args = {"text_col": "text", "label_col": "label", "valid_col": "is_valid", **kw}
    with pytest.raises(DataError, match=match):
        TextBlock("text_cls", CsvSource(f, **args), min_freq=1).check()


def test_non_utf8_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_bytes(b"label,text,is_valid\nneg,ok,False\npos,caf\xe9,True\n")
    with pytest.raises(DataError, match=r"t.csv: line 3 .*not valid UTF-8"):
        TextBlock("text_cls", CsvSource(f, "text", "label", "is_valid")).check()


def test_too_long_text_names_row(tmp_path: Path) -> None:
    rows = _rows()
    rows[3] = "pos," + " ".join(f"w{i}" for i in range(50)) + ",False"
    f = _csv(tmp_path / "t.csv", rows)
    with pytest.raises(DataError, match=r"t.csv row 5: text is \d+ tokens, more than max_len = 20"):
        TextBlock("text_cls", CsvSource(f, "text", "label", "is_valid"), max_len=20).check()


def test_folder_and_file_sources(tmp_path: Path) -> None:
    for split in ("train", "valid"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                (tmp_path / split / cls / f"{i}.txt").write_text(f"{cls} text {i}")
    items = FolderSource(tmp_path)()
    assert {it.label for it in items} == {"a", "b"} and sum(bool(it.is_valid) for it in items) == 6
    (tmp_path / "train" / "a" / "empty.txt").write_text("  \n")
    with pytest.raises(DataError, match="empty.txt is empty"):
        FolderSource(tmp_path)()
    big = tmp_path / "corpus.txt"
    big.write_text("First para\nstill first.\n\nSecond para.\n\n\nThird.\n")
    docs = FileSource(big)()
    assert [d.text for d in docs] == ["First para\nstill first.", "Second para.", "Third.\n"]
    assert docs[1].where == "corpus.txt line 4"


def test_builtin_pydoc_corpus_and_run_presets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labcon.data.text_datasets import ensure_pydoc
    from labcon.session.target import resolve_target

    monkeypatch.setenv("LABCON_DATA", str(tmp_path))
    folder = ensure_pydoc()
    assert folder == tmp_path / "pydoc" and ensure_pydoc() == folder  # written once
    items = CsvSource(folder / "texts.csv", "text", "label", "is_valid")()
    assert len(items) > 500 and {it.label for it in items} == {"module", "class", "function"}
    assert 0.15 < sum(bool(it.is_valid) for it in items) / len(items) < 0.25
    for preset, kind in (("pydoc", "text_lm"), ("pydoc_cls", "text_cls")):
        cfg = resolve_target(preset, tmp_path / "sessions").config
        assert cfg is not None
        assert cfg.data.raw["kind"] == kind and cfg.model.arch == "awd_lstm"
