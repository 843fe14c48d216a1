"""Where a dataset's files are: a local folder, or object storage through fsspec.

``storage_for(location)`` gives a :class:`LocalStorage` for a path and an
:class:`FsspecStorage` for a URL (``http(s)://``, ``s3://`` with the standard AWS
variables, ``AWS_ENDPOINT_URL`` included, or any protocol whose fsspec package is
installed, such as ``gs://``). Both read only the names the manifest rules admit
(validated by the caller): a storage never builds a path or URL from anything else.

A whole shard is copied in one pass (``copy_verified``), hashed on the way and checked
against the manifest's size and sha256: a shard whose bytes differ is an error and never
served. The node's verified copies live in ``reiddata.cache``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO

from .errors import bad_input

log = logging.getLogger("reiddata")

__all__ = ["FsspecStorage", "LocalStorage", "copy_verified", "fetch_verified", "is_remote", "sha256_of", "storage_for"]

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
        self._s3, self._s3_pid = None, -1
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
        return dict(self.__dict__, _fs=None, _pid=-1, _s3=None, _s3_pid=-1)

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

    def stream(self, name: str) -> BinaryIO:
        """The whole file ``name``, read front to back in one request with no range cache in
        between: HTTP(S) as one streamed response, S3 as one GET through botocore's own
        synchronous client, other protocols through fsspec's file in blocks of ``WHOLE``.

        Why not fsspec's file for all: a shard copied through it costs about 0.66 CPU-s per
        288 MB over HTTP (its block cache) and 0.57 over S3 (aiobotocore under an event-loop
        thread), against 0.42 and 0.43 this way, where hashing and copying alone cost 0.41
        (``benchmarks/remote.py``'s data, one process): on a box whose cores decode
        images, every CPU-second spent fetching is decoding not done."""
        protocols = self.fs.protocol if isinstance(self.fs.protocol, (tuple, list)) else (self.fs.protocol,)
        if "s3" in protocols:
            return self._s3_object(name)
        if "http" in protocols or "https" in protocols:
            return self.fs.open(self._path(name), "rb", block_size=0)  # fsspec's streamed HTTP file
        return self.open(name, block_size=WHOLE)

    def _s3_object(self, name: str) -> BinaryIO:
        """The body of ``s3://bucket/key/name`` as a stream (credentials, region and endpoint
        from the same environment and config files s3fs reads)."""
        import botocore.exceptions

        bucket, _, key = self._path(name).partition("/")
        try:
            return self.s3_client().get_object(Bucket=bucket, Key=key)["Body"]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise bad_input(self.join(name), f"cannot be read ({exc})", "check the URL and credentials") from None

    def s3_client(self):
        """botocore's S3 client of this process: made once (threads wait for it: two made at
        once took 1.2 s here, one 0.2 s), from a session the process that opened the dataset
        has warmed, so a forked DataLoader worker does not parse botocore's models again."""
        with _S3_LOCK:
            if self._s3_pid != os.getpid():
                self._s3, self._s3_pid = _botocore_session().create_client("s3"), os.getpid()
            return self._s3


_S3_LOCK = threading.Lock()
_SESSION: list = []


def _botocore_session():
    """One botocore session per interpreter (forked workers inherit it, its models parsed)."""
    if not _SESSION:
        import botocore.session

        _SESSION.append(botocore.session.get_session())
    return _SESSION[0]


def _new_s3_lock_in_child() -> None:
    global _S3_LOCK
    _S3_LOCK = threading.Lock()  # a thread of the parent may have held it at the fork


os.register_at_fork(after_in_child=_new_s3_lock_in_child)


def storage_for(location: str | Path) -> LocalStorage | FsspecStorage:
    return FsspecStorage(location) if is_remote(location) else LocalStorage(location)


def sha256_of(storage: LocalStorage | FsspecStorage, name: str) -> str:
    """The sha256 of file ``name`` of ``storage``, read in chunks."""
    digest = hashlib.sha256()
    with storage.open(name) as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def copy_verified(storage: FsspecStorage, name: str, expected: dict, out: BinaryIO) -> None:
    """Copy shard ``name`` into ``out`` in one streamed read; raise, naming it, unless its size and
    sha256 are the manifest's (``expected``). The caller discards ``out`` on error."""
    digest, size = hashlib.sha256(), 0
    with contextlib.closing(storage.stream(name)) as source:
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
