"""The node's verified copies of a remote dataset's shards, within a budget, fetched ahead.

Random access to a remote dataset, and streaming with ``cache=True``, go through
:class:`ShardCache`: each shard is downloaded once per node into
``cache_dir/<version>/``, hashed while it is written (``storage.copy_verified``),
checked against the manifest's sha256 and renamed into place; a shard whose bytes
differ is an error and never served. Workers and ranks of one node share the cache:
the download of a shard is serialised by an ``flock`` on a lock file beside it. A
``limit`` bounds the bytes it keeps (shards no reader holds are evicted, least
recently opened first), so a dataset larger than the disk can stream through it; a
:class:`Prefetcher` downloads a map-style reader's shards ahead of its items.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import sys
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from .storage import FsspecStorage, copy_verified

log = logging.getLogger("reiddata")

__all__ = ["Prefetcher", "ShardCache", "default_cache_dir", "node_slot", "parse_size"]


def default_cache_dir() -> Path:
    """``$REIDDATA_CACHE``, else ``$XDG_CACHE_HOME/reiddata``, else ``~/.cache/reiddata``."""
    if os.environ.get("REIDDATA_CACHE"):
        return Path(os.environ["REIDDATA_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "reiddata"


class ShardCache:
    """Verified local copies of a remote dataset's shards, keyed by dataset version, within a
    byte budget (``limit``; None: no budget).

    A shard in use is held open with a shared ``flock``; eviction takes an exclusive one
    without waiting, so it only ever removes a shard no reader on this node holds. The
    least recently opened go first (a reader touches the file's mtime when it opens it).
    A download reserves its bytes first: a ``.part`` file, held under an exclusive lock
    while it is written, counts at its shard's full size, so concurrent downloads by
    other workers and ranks stay within the budget; a ``.part`` whose lock is free was
    left by a process that died, and is removed.
    """

    def __init__(
        self,
        storage: FsspecStorage,
        cache_dir: Path,
        version: str,
        shards: dict[str, dict],
        *,
        limit: int | None = None,
    ) -> None:
        self.storage, self.shards, self.limit = storage, shards, limit
        self.folder = Path(cache_dir) / version  # version: 16 hex digits, validated with the manifest
        if storage.location.startswith("s3://"):
            storage.s3_client()  # made here, where shards will be fetched: forked workers inherit its parsed models

    def open(self, name: str) -> int:
        """A read-only descriptor of the verified local copy of shard ``name``, held in use
        (never evicted) until it is closed; downloaded first if this node has none."""
        target = self.folder / name
        while True:
            try:
                fd = os.open(target, os.O_RDONLY)
            except FileNotFoundError:
                self._fetch(name, evict=True, wait=True)
                continue
            fcntl.flock(fd, fcntl.LOCK_SH)  # waits out an eviction that has the file locked
            if os.fstat(fd).st_nlink == 0:  # evicted between our open and our lock: fetch again
                os.close(fd)
                continue
            _touch(target)
            return fd

    def path(self, name: str) -> Path:
        """The local, verified file of shard ``name`` (downloaded if missing). Not held: with a
        ``limit`` it may be evicted once returned; readers use :meth:`open`."""
        os.close(self.open(name))
        return self.folder / name

    def cached(self, name: str) -> Path | None:
        """The verified local file of shard ``name`` when this node already has it."""
        target = self.folder / name
        return target if target.is_file() else None

    def prefetch(self, name: str, *, wait: bool = False) -> bool:
        """Download shard ``name`` now if this node has none and the budget has room without
        evicting anything. Another process downloading it: ``wait`` for that download (a
        stream's fetches stay in reading order on the node: the shard needed next never
        shares the link with one needed later), or go on at once. Whether it is here (or
        on its way) afterwards."""
        target = self.folder / name
        if target.is_file():
            return True
        return self._fetch(name, evict=False, wait=wait)

    def used(self) -> int:
        """Bytes the cache holds or has reserved: verified shards and downloads in flight."""
        total = 0
        for entry in os.scandir(self.folder) if self.folder.is_dir() else ():
            shard = _shard_of(entry.name)
            if shard in self.shards:
                total += self.shards[shard]["bytes"]
        return total

    def _fetch(self, name: str, *, evict: bool, wait: bool) -> bool:
        """Download shard ``name`` under its lock (one download per node): ``wait`` for another
        process's download of it (else return at once); ``evict`` to make room in the budget
        (else give up when it has none)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with _exclusive(self.folder / f".{name}.lock", create=True, wait=wait) as lock:
            if lock is None:
                return True  # another worker is downloading it
            target = self.folder / name
            if target.is_file():
                return True
            part = self._reserve(name, evict=evict)
            if part is None:
                return False
            tmp, fd = part
            try:
                with os.fdopen(fd, "wb", closefd=False) as out:
                    copy_verified(self.storage, name, self.shards[name], out)
                os.replace(tmp, target)  # still locked: the bytes are whole and verified
            finally:
                _release(fd)
                tmp.unlink(missing_ok=True)
            return True

    def _reserve(self, name: str, *, evict: bool) -> tuple[Path, int] | None:
        """A locked ``.part`` file for shard ``name``, made once the budget has room for it
        (evicting unused shards, least recently opened first, when ``evict``). A needed shard
        is fetched even when everything left is in use; the cache then runs over its limit
        by what the readers hold open, and says so once."""
        with _exclusive(self.folder / ".budget.lock", create=True):  # one process at a time counts and evicts
            if self.limit is not None:
                self._drop_stale_parts()
                room = self.limit - self.used() - self.shards[name]["bytes"]
                if room < 0 and evict:
                    room += self._evict(-room)
                if room < 0 and not evict:
                    return None
                if room < 0:
                    _over_limit(self.folder, self.limit)
            tmp = self.folder / f".{name}.{os.getpid()}-{secrets.token_hex(4)}.part"
            fd = _held(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            fcntl.flock(fd, fcntl.LOCK_EX)  # held while it is written: not stale
            return tmp, fd

    def _evict(self, needed: int) -> int:
        """Remove verified shards no reader holds, least recently opened first, until
        ``needed`` bytes are free; the bytes freed."""
        shards = [e for e in os.scandir(self.folder) if e.name in self.shards and e.is_file()]
        freed = 0
        for entry in sorted(shards, key=lambda e: e.stat().st_mtime_ns):
            if freed >= needed:
                break
            with _exclusive(entry.path, wait=False) as fd:
                if fd is not None:  # else: in use, or gone
                    os.unlink(entry.path)
                    freed += self.shards[entry.name]["bytes"]
        return freed

    def _drop_stale_parts(self) -> None:
        for entry in os.scandir(self.folder):
            if entry.name.endswith(".part"):
                with _exclusive(entry.path, wait=False) as fd:
                    if fd is not None:
                        os.unlink(entry.path)  # its writer is gone


# Descriptors that hold an exclusive lock (a download, a reservation, the budget). A fork
# copies them into the child, and an flock lives while any copy is open: a child of a
# process caught mid-download would keep that shard locked, and wait on itself if it
# ever needed the shard. The child closes its copies; the parent's locks are untouched.
_HELD: set[int] = set()


def _held(fd: int) -> int:
    _HELD.add(fd)
    return fd


def _release(fd: int) -> None:
    _HELD.discard(fd)
    os.close(fd)


@contextlib.contextmanager
def _exclusive(path: Path | str, *, create: bool = False, wait: bool = True) -> Iterator[int | None]:
    """An exclusive ``flock`` on ``path`` (None: the file is gone, or locked and ``wait`` is off)."""
    try:
        fd = _held(os.open(path, os.O_RDWR | os.O_CREAT if create else os.O_RDONLY, 0o644))
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield fd
    finally:
        _release(fd)


def _after_fork_in_child() -> None:
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _shard_of(entry: str) -> str:
    """The shard a cache entry holds or is being downloaded into (``.NAME.PID-HEX.part``)."""
    if entry.startswith(".") and entry.endswith(".part"):
        return entry[1:].rsplit(".", 2)[0]
    return entry


def _touch(path: Path) -> None:
    try:
        os.utime(path)  # least recently *opened* goes first: the eviction order
    except OSError:
        pass


_WARNED: set[Path] = set()


def _over_limit(folder: Path, limit: int) -> None:
    if folder not in _WARNED:
        _WARNED.add(folder)
        log.warning(
            "%s: the shards in use exceed cache_limit (%d bytes); it is exceeded by what readers hold open "
            "(raise the limit above workers x (prefetch + 1) shards)",
            folder,
            limit,
        )


class Prefetcher:
    """Downloads ``names`` into a :class:`ShardCache` on ``depth`` daemon threads, in order,
    stopping at the first the budget has no room for. A shard that fails (damaged in
    storage, the network) is skipped: its reader fetches it when it needs it and reports
    what is wrong; nothing unverified is ever kept."""

    def __init__(self, cache: ShardCache, names: list[str], *, depth: int) -> None:
        self.cache, self.depth = cache, depth
        self.pending = deque(names)
        self.lock = threading.Lock()
        self.stopped = False

    def start(self) -> Prefetcher:
        for _ in range(min(self.depth, len(self.pending))):
            threading.Thread(target=self._run, daemon=True, name="reiddata-prefetch").start()
        return self

    def _run(self) -> None:
        while True:
            with self.lock:
                if self.stopped or not self.pending:
                    return
                name = self.pending.popleft()
            try:
                room = self.cache.prefetch(name)
            except Exception:  # noqa: BLE001  (the reader reports it when it needs the shard)
                continue
            if not room:
                self.stopped = True


def node_slot() -> tuple[int, int]:
    """``(slot, slots)`` of this process among the readers of its node: local rank x DataLoader
    workers + worker (``torchrun`` sets ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE``)."""
    worker, workers = 0, 1
    if "torch" in sys.modules:  # in a DataLoader worker, torch is loaded; never import it here
        info = sys.modules["torch"].utils.data.get_worker_info()
        if info is not None:
            worker, workers = info.id, info.num_workers
    rank, ranks = int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return rank * workers + worker, ranks * workers


SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)


def parse_size(value: int | str | None) -> int | None:
    """Bytes from an int or a string such as ``"500MB"``, ``"40GiB"``, ``"2T"`` (None: no limit)."""
    if value is None or isinstance(value, int):
        return value
    match = SIZE.match(str(value))
    if not match:
        raise ValueError(f"cache limit {value!r}: expected bytes, e.g. 500MB, 40GiB or 2T")
    number, unit, binary = match.groups()
    base = 1024 if binary else 1000
    return int(float(number) * base ** " kmgt".index(unit.lower() or " "))
