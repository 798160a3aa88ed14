"""Download registry against a local HTTP server: good, corrupted, interrupted+resumed, offline, unsafe tar."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from labcon.data.downloads import REGISTRY, DatasetEntry, download, extract, fetch
from labcon.errors import DataError
from tests.helpers import free_port


def _tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


PAYLOAD = _tarball(
    {f"tiny/train/a/{i}.txt": bytes([i]) * 5000 for i in range(20)} | {"tiny/readme.txt": b"hello"}
)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        srv = self.server
        srv.ranges.append(self.headers.get("Range"))  # type: ignore[attr-defined]
        body = srv.body  # type: ignore[attr-defined]
        start = 0
        rng = self.headers.get("Range")
        if rng and srv.ranges_ok:  # type: ignore[attr-defined]
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = srv.cut_after  # type: ignore[attr-defined]
        chunk = body[start:] if cut is None else body[start:cut]
        self.wfile.write(chunk)
        if cut is not None:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.body, srv.cut_after, srv.ranges, srv.ranges_ok = PAYLOAD, None, [], True  # type: ignore[attr-defined]
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _entry(srv: ThreadingHTTPServer, **kw: object) -> DatasetEntry:
    url = f"http://127.0.0.1:{srv.server_address[1]}/tiny.tgz"
    args = dict(
        sha256=hashlib.sha256(PAYLOAD).hexdigest(), md5=hashlib.md5(PAYLOAD).hexdigest(), size=len(PAYLOAD)
    )
    args.update(kw)
    return DatasetEntry("tiny", url, "tiny", **args)  # type: ignore[arg-type]


def test_registry_has_the_real_sets() -> None:
    for name in ("mnist", "imagenette-160", "imagenette-320", "imagewoof-160", "imdb"):
        e = REGISTRY[name]
        assert e.url.startswith("https://") and e.folder
    assert REGISTRY["imagenette-160"].md5 == "e793b78cc4c9e9a4ccc0c1155377a412"


def test_good_download_with_progress(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    out = download(_entry(server), tmp_path, progress=lambda d, t: seen.append((d, t)))
    assert out == tmp_path / "tiny" and (out / "readme.txt").read_bytes() == b"hello"
    assert len(list((out / "train" / "a").iterdir())) == 20
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD)) and all(d <= t for d, t in seen if t)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]  # archive and temp dirs gone
    assert download(_entry(server), tmp_path) == out and len(server.ranges) == 1  # type: ignore[attr-defined]


def test_corrupted_download_is_rejected_and_discarded(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    body = bytearray(PAYLOAD)
    body[100] ^= 0xFF
    server.body = bytes(body)  # type: ignore[attr-defined]
    with pytest.raises(DataError, match="checksum mismatch for tiny.tgz: md5 is .* expected .* corrupt"):
        download(_entry(server), tmp_path)
    assert not (tmp_path / "tiny").exists() and not list(tmp_path.glob("*.part"))
    with pytest.raises(DataError, match="sha256 is"):
        download(_entry(server, md5=None), tmp_path)


def test_interrupted_download_resumes_with_range(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    half = len(PAYLOAD) // 2
    server.cut_after = half  # type: ignore[attr-defined]
    with pytest.raises(DataError, match="interrupted at .* run again to resume"):
        download(_entry(server), tmp_path)
    part = tmp_path / "tiny.tgz.part"
    assert part.stat().st_size == half
    server.cut_after = None  # type: ignore[attr-defined]
    out = download(_entry(server), tmp_path)
    assert server.ranges[-1] == f"bytes={half}-"  # type: ignore[attr-defined]
    assert (out / "readme.txt").read_bytes() == b"hello" and not part.exists()


def test_server_without_range_support_restarts_cleanly(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    (tmp_path / "tiny.tgz.part").write_bytes(PAYLOAD[:1000])
    server.ranges_ok = False  # type: ignore[attr-defined]
    out = download(_entry(server), tmp_path)
    assert (out / "readme.txt").read_bytes() == b"hello"


def test_offline_gives_clear_error(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there now
    with pytest.raises(DataError, match="cannot reach 127.0.0.1.*are you offline"):
        fetch(f"http://127.0.0.1:{port}/x.tgz", tmp_path / "x.tgz", timeout=5)


def test_unsafe_tar_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "evil.tgz"
    bad.write_bytes(_tarball({"evil/ok.txt": b"1", "../../escape.txt": b"2"}))
    with pytest.raises(DataError, match="unsafe path '../../escape.txt'"):
        extract(bad, tmp_path / "root", "evil")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "root" / "evil").exists()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        link = tarfile.TarInfo("evil/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    bad.write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="link 'evil/link' -> '/etc/passwd'"):
        extract(bad, tmp_path / "root", "evil")


def test_unknown_name() -> None:
    with pytest.raises(DataError, match="unknown dataset 'cifar'; known: mnist"):
        download("cifar")
