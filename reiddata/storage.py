"""Where a dataset's files are: a local folder, or object storage through fsspec.

``storage_for(location)`` gives a :class:`LocalStorage` for a path and an
:class:`FsspecStorage` for a URL (``http(s)://``, ``s3://`` with the standard AWS
variables, ``AWS_ENDPOINT_URL`` included, or any protocol whose fsspec package is
installed, such as ``gs://``). Both read only the names the manifest rules admit
(validated by the caller): a storage never builds a path or URL from anything else.

Random access to a remote dataset goes through :class:`ShardCache`: each shard is
downloaded once per node into ``cache_dir/<version>/``, hashed while it is written,
checked against the manifest's sha256 and renamed into place; a shard whose bytes
differ is an error and never served. Workers and ranks of one node share the cache:
the download of a shard is serialised by an ``flock`` on a lock file beside it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import BinaryIO

from .errors import bad_input

__all__ = [
    "FsspecStorage",
    "LocalStorage",
    "ShardCache",
    "default_cache_dir",
    "fetch_verified",
    "is_remote",
    "sha256_of",
    "storage_for",
]

CHUNK = 1 << 22
WHOLE = 1 << 25  # bytes per GET when copying a whole shard (moto S3 here: 136 MB/s at 4 MiB, 338 at 64 MiB)
SPOOL = 1 << 26  # a streamed shard is held in memory up to 64 MiB, beyond that in a temporary file


def is_remote(location: str | Path) -> bool:
    """Whether ``location`` is a URL of a protocol other than plain files."""
    return isinstance(location, str) and "://" in location and not location.startswith("file://")


class LocalStorage:
    """A dataset folder on this machine."""

    remote = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(str(path).removeprefix("file://"))
        self.location = str(self.path)

    def join(self, name: str) -> str:
        return str(self.path / name)

    def exists(self, name: str) -> bool:
        return (self.path / name).is_file()

    def read(self, name: str) -> bytes:
        return (self.path / name).read_bytes()

    def size(self, name: str) -> int:
        return (self.path / name).stat().st_size

    def open(self, name: str) -> BinaryIO:
        return (self.path / name).open("rb")


class FsspecStorage:
    """A dataset under a URL, read through fsspec (HTTP Range requests, S3 GETs, ...)."""

    remote = True

    def __init__(self, location: str) -> None:
        self.location = location.rstrip("/")
        self._fs, self._root, self._pid = None, "", -1
        self.fs  # noqa: B018  (an unknown protocol fails here, with the location named)

    @property
    def fs(self):
        """The fsspec filesystem, made anew in each process: fsspec's async ones are not fork-safe."""
        if self._pid != os.getpid():
            import fsspec

            try:
                self._fs, self._root = fsspec.core.url_to_fs(self.location, skip_instance_cache=True)
            except (ImportError, ValueError) as exc:
                raise bad_input(
                    self.location, f"cannot be read: {exc}", "install the fsspec package of its protocol"
                ) from None
            self._pid = os.getpid()
        return self._fs

    def __getstate__(self) -> dict:
        return dict(self.__dict__, _fs=None, _pid=-1)

    def join(self, name: str) -> str:
        return f"{self.location}/{name}"

    def _path(self, name: str) -> str:
        return f"{self._root}/{name}"

    def exists(self, name: str) -> bool:
        try:
            return bool(self.fs.isfile(self._path(name)))
        except OSError:
            return False

    def read(self, name: str) -> bytes:
        try:
            return self.fs.cat_file(self._path(name))
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise bad_input(self.join(name), f"cannot be read ({exc})", "check the URL and credentials") from None

    def size(self, name: str) -> int:
        return int(self.fs.size(self._path(name)))

    def open(self, name: str, block_size: int = CHUNK) -> BinaryIO:
        return self.fs.open(self._path(name), "rb", block_size=block_size)


def storage_for(location: str | Path) -> LocalStorage | FsspecStorage:
    return FsspecStorage(location) if is_remote(location) else LocalStorage(location)


def sha256_of(storage: LocalStorage | FsspecStorage, name: str) -> str:
    """The sha256 of file ``name`` of ``storage``, read in chunks."""
    digest = hashlib.sha256()
    with storage.open(name) as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """``$REIDDATA_CACHE``, else ``$XDG_CACHE_HOME/reiddata``, else ``~/.cache/reiddata``."""
    if os.environ.get("REIDDATA_CACHE"):
        return Path(os.environ["REIDDATA_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "reiddata"


class ShardCache:
    """Verified local copies of a remote dataset's shards, keyed by dataset version."""

    def __init__(self, storage: FsspecStorage, cache_dir: Path, version: str, shards: dict[str, dict]) -> None:
        self.storage, self.shards = storage, shards
        self.folder = Path(cache_dir) / version  # version: 16 hex digits, validated with the manifest

    def path(self, name: str) -> Path:
        """The local, verified file of shard ``name``, downloading it first if this node has none."""
        target = self.folder / name
        if target.is_file():  # renamed into place only after its sha256 matched
            return target
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f".{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one download per shard per node; the others wait
            if not target.is_file():
                self._download(name, target)
        return target

    def cached(self, name: str) -> Path | None:
        """The verified local file of shard ``name`` when this node already has it."""
        target = self.folder / name
        return target if target.is_file() else None

    def _download(self, name: str, target: Path) -> None:
        tmp = target.parent / f".{name}.{os.getpid()}-{secrets.token_hex(4)}.part"
        try:
            with open(tmp, "wb") as out:
                copy_verified(self.storage, name, self.shards[name], out)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


def copy_verified(storage: FsspecStorage, name: str, expected: dict, out: BinaryIO) -> None:
    """Copy shard ``name`` into ``out`` in one streamed read; raise, naming it, unless its size and
    sha256 are the manifest's (``expected``). The caller discards ``out`` on error."""
    digest, size = hashlib.sha256(), 0
    with storage.open(name, block_size=WHOLE) as source:
        for block in iter(lambda: source.read(CHUNK), b""):
            digest.update(block)
            size += len(block)
            out.write(block)
    if size != expected["bytes"] or digest.hexdigest() != expected["sha256"]:
        raise bad_input(
            storage.join(name),
            f"the bytes in storage ({size}) do not match the manifest's size and sha256: not served",
            "upload the shard again (or convert and upload the dataset again)",
        )


def fetch_verified(storage: FsspecStorage, name: str, expected: dict) -> BinaryIO:
    """Shard ``name`` streamed from storage into a temporary file (in memory up to ``SPOOL``
    bytes, then on local disk), verified, rewound: for streaming without a cache. A
    streaming worker holds two (the one it reads, the next one arriving)."""
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL)
    try:
        copy_verified(storage, name, expected, out)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out
