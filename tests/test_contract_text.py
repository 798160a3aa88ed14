"""The session contract for text sessions: `text_batch` on the real Session and over the socket (RemoteSession)
(the fake has image data only: its text_batch is None, as tests/test_contract.py asserts)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labcon.errors import LabconError
from labcon.remote.client import RemoteSession
from labcon.remote.server import ControlServer, control_socket_path
from labcon.session.api import SessionAPI
from labcon.session.config import parse_config
from labcon.session.session import Session
from tests.helpers import write_labelled_texts


@pytest.fixture(scope="module")
def text_data() -> Iterator[Path]:
    """Labelled texts of different lengths (so classifier batches are padded)."""
    d = Path(tempfile.mkdtemp(prefix="lctxt", dir="/tmp"))
    yield write_labelled_texts(d, 48)
    shutil.rmtree(d, ignore_errors=True)


def _text_session(data: Path, kind: str, home: Path) -> Session:
    cfg = (
        f'name = "{kind}"\nseed = 2\n[data]\nkind = "{kind}"\npath = "{data}"\nvalid_col = "is_valid"\n'
        "min_freq = 1\nbs = 6\nbptt = 8\nnum_workers = 0\n"
        '[model]\narch = "awd_lstm"\nemb_sz = 8\nn_hid = 8\nn_layers = 1\n[train]\ndevice = "cpu"\n'
    )
    return Session(parse_config(cfg), home)


@pytest.mark.parametrize("where", ["session", "remote"])
def test_text_batch_rows_over_the_contract(where: str, text_data: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="lc", dir="/tmp"))
    closers: list[Callable[[], None]] = [lambda: shutil.rmtree(home, ignore_errors=True)]
    try:
        for kind in ("text_cls", "text_lm"):
            local = _text_session(text_data, kind, home)
            closers.append(local.close)
            s: SessionAPI = local
            if where == "remote":
                server = ControlServer(local, control_socket_path(home, local.name)).start()
                s = RemoteSession(server.path)
                closers += [server.close, s.close]
            first = s.text_batch()
            assert first is not None and first.kind == kind and first.draw == 0 and first.index == 0
            assert first == local.text_batch(0) and s.text_batch(3) == local.text_batch(3)  # a draw repeats
            assert any(s.text_batch(d) != first for d in (1, 2, 3))  # r shows another batch
            assert "xxbos" in first.specials and "xxmaj" in first.specials
            x, y = local.dls.one_batch()  # the training loader's own first batch
            vocab = local.dls.vocab
            assert first.shape == tuple(x.shape) and len(first.rows) == min(8, x.shape[0])
            for k, row in enumerate(first.rows):
                ids = [i for i in x[k].tolist() if i != vocab.pad]
                assert list(row.tokens) == vocab.decode(ids) and row.length == len(ids)
                assert row.n_pad == x.shape[1] - len(ids)
                if kind == "text_cls":  # pad-first: the padding is before the text
                    assert first.pad_first and row.label == local.dls.classes[int(y[k])]
                    assert x[k, : row.n_pad].eq(vocab.pad).all() and row.next_token is None
                else:  # the target is the row shifted one token left; next_token is its last token
                    assert (
                        y[k, :-1].tolist() == x[k, 1:].tolist()
                        and row.next_token == vocab.itos[int(y[k, -1])]
                    )
                    assert row.label is None and row.n_pad == 0
            if kind == "text_cls":
                assert any(r.n_pad > 0 for r in first.rows)
            with pytest.raises(LabconError, match="draw"):
                s.text_batch(-1)
    finally:
        for close in reversed(closers):
            close()
