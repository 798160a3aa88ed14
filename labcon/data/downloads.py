"""Download registry for real datasets: resumable HTTP download, checksum, safe atomic extraction.

The engine never prints: progress goes to a `progress(done_bytes, total_bytes_or_None)` callback.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from labcon.data.datasets import data_root, make_data_root
from labcon.errors import DataError

Progress = Callable[[int, int | None], None]
_CHUNK = 1 << 16


@dataclass(frozen=True)
class DatasetEntry:
    """One downloadable dataset: where it is, how to verify it, what folder it unpacks to."""

    name: str
    url: str
    folder: str
    archive: str = "tgz"
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    description: str = ""

    @property
    def filename(self) -> str:
        """The archive's file name (last part of the URL)."""
        return self.url.rsplit("/", 1)[-1]


_S3 = "https://s3.amazonaws.com"
REGISTRY: dict[str, DatasetEntry] = {
    e.name: e
    for e in (
        DatasetEntry(
            "mnist",
            f"{_S3}/fast-ai-imageclas/mnist_png.tgz",
            "mnist_png",
            description="MNIST digits as PNG, training/ and testing/",
        ),
        DatasetEntry(
            "mnist_tiny",
            f"{_S3}/fast-ai-sample/mnist_tiny.tgz",
            "mnist_tiny",
            description="3s and 7s, 1.4k 28x28 PNGs",
        ),
        DatasetEntry(
            "imagenette-160",
            f"{_S3}/fast-ai-imageclas/imagenette2-160.tgz",
            "imagenette2-160",
            md5="e793b78cc4c9e9a4ccc0c1155377a412",
            description="10 easy ImageNet classes, shortest side 160 px (train/, val/)",
        ),
        DatasetEntry(
            "imagenette-320",
            f"{_S3}/fast-ai-imageclas/imagenette2-320.tgz",
            "imagenette2-320",
            md5="3df6f0d01a2c9592104656642f5e78a3",
            description="10 easy ImageNet classes, shortest side 320 px (train/, val/)",
        ),
        DatasetEntry(
            "imagewoof-160",
            f"{_S3}/fast-ai-imageclas/imagewoof2-160.tgz",
            "imagewoof2-160",
            description="10 dog breeds, 160 px",
        ),
        DatasetEntry(
            "imagewoof-320",
            f"{_S3}/fast-ai-imageclas/imagewoof2-320.tgz",
            "imagewoof2-320",
            description="10 dog breeds, 320 px",
        ),
        DatasetEntry(
            "imdb",
            "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
            "aclImdb",
            md5="7c2ac02c03563afcf9b574c7e56c153a",
            description="50k movie reviews, positive/negative (train/, test/)",
        ),
        DatasetEntry(
            "imdb_sample",
            f"{_S3}/fast-ai-sample/imdb_sample.tgz",
            "imdb_sample",
            description="1,000 IMDB reviews in one CSV",
        ),
    )
}


def get_entry(name: str) -> DatasetEntry:
    """The registry entry for `name`, or a DataError listing the known names."""
    if name not in REGISTRY:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(REGISTRY)} (see `labcon data list`)")
    return REGISTRY[name]


def _offline(url: str, e: BaseException) -> DataError:
    host = url.split("/")[2] if "//" in url else url
    return DataError(
        f"cannot download {url}: cannot reach {host} ({getattr(e, 'reason', e)}) — are you offline? "
        "Run again when online (partial downloads resume), or download the file by hand into the data folder"
    )


def _hashes(path: Path) -> tuple[str, str]:
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


def verify(
    path: Path,
    md5: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    name: str | None = None,
) -> None:
    """Raise DataError when the file's size or checksum differs from what is expected."""
    name = name or path.name
    if size is not None and path.stat().st_size != size:
        raise DataError(f"{name} has {path.stat().st_size} bytes, expected {size} — the download is corrupt")
    if md5 is None and sha256 is None:
        return
    got_md5, got_sha = _hashes(path)
    for kind, want, got in (("md5", md5, got_md5), ("sha256", sha256, got_sha)):
        if want is not None and want.lower() != got:
            raise DataError(
                f"checksum mismatch for {name}: {kind} is {got}, expected {want} — the download is corrupt"
            )


def fetch(
    url: str,
    dest: Path,
    md5: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    progress: Progress | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download `url` to `dest` via `dest.part`, resuming a partial file with an HTTP Range request."""
    dest = Path(dest)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    req = urllib.request.Request(
        url, headers={"User-Agent": "labcon", **({"Range": f"bytes={have}-"} if have else {})}
    )
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to fetch: the part file is complete
            resp = None
        else:
            raise DataError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (TimeoutError, urllib.error.URLError, ConnectionError) as e:
        raise _offline(url, e) from None
    if resp is not None:
        with resp:
            resumed = have and resp.status == 206
            if not resumed:
                have = 0
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length is not None else size
            done = have
            try:
                with open(part, "ab" if resumed else "wb") as f:
                    while chunk := resp.read(_CHUNK):
                        f.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
            except (TimeoutError, http.client.IncompleteRead, ConnectionError, OSError) as e:
                raise DataError(
                    f"download of {url} interrupted at {done} of {total or '?'} bytes ({type(e).__name__}); "
                    "run again to resume"
                ) from None
            if total is not None and done < total:
                raise DataError(
                    f"download of {url} interrupted at {done} of {total} bytes; run again to resume"
                )
    try:
        verify(part, md5, sha256, size, name=dest.name)
    except DataError:
        part.unlink(missing_ok=True)  # a corrupt file must not be resumed
        raise
    os.replace(part, dest)
    return dest


def _safe_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    out = []
    for m in tar.getmembers():
        p = PurePosixPath(m.name)
        if p.is_absolute() or ".." in p.parts:
            raise DataError(
                f"archive {archive.name} has an unsafe path {m.name!r} (outside the target) — not extracted"
            )
        if m.issym() or m.islnk():
            t = PurePosixPath(m.linkname)
            if t.is_absolute() or ".." in (p.parent / t).parts:
                raise DataError(
                    f"archive {archive.name} has a link {m.name!r} -> {m.linkname!r} leaving the target"
                )
        if m.isdev():
            raise DataError(f"archive {archive.name} contains a device file {m.name!r} — not extracted")
        out.append(m)
    return out


def extract(archive: Path, root: Path, folder: str) -> Path:
    """Unpack `archive` so that `root/folder` appears atomically (temp dir, then rename); no path traversal."""
    archive, root = Path(archive), Path(root)
    dest = root / folder
    if dest.is_dir():
        return dest
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder}-", dir=root))
    try:
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as z:
                    for n in z.namelist():
                        if PurePosixPath(n).is_absolute() or ".." in PurePosixPath(n).parts:
                            raise DataError(
                                f"archive {archive.name} has an unsafe path {n!r} — not extracted"
                            )
                    z.extractall(tmp)
            else:
                with tarfile.open(archive) as tar:
                    tar.extractall(tmp, members=_safe_members(tar, archive), filter="data")
        except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
            raise DataError(f"cannot unpack {archive}: {e} — delete it and download again") from None
        # An archive without a top folder: its contents become the folder.
        os.rename(tmp / folder if (tmp / folder).is_dir() else tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def download(
    name: str | DatasetEntry,
    root: str | Path | None = None,
    progress: Progress | None = None,
    timeout: float = 30.0,
    keep_archive: bool = False,
) -> Path:
    """Fetch, verify and unpack a registry dataset into the data root; returns its folder."""
    entry = get_entry(name) if isinstance(name, str) else name
    base = data_root(root)
    dest = base / entry.folder
    if dest.is_dir():
        return dest
    make_data_root(base)
    archive = fetch(entry.url, base / entry.filename, entry.md5, entry.sha256, entry.size, progress, timeout)
    out = extract(archive, base, entry.folder)
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return out
