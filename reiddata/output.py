"""Writing an output folder without ever destroying what reiddata did not create.

The rules (README, "What reiddata promises"):

- the output may not be the input, hold it, or lie inside it (paths resolved first);
- an existing output is replaced only with ``overwrite`` and only when ``is_ours``
  says it is something reiddata wrote (a dataset with our manifest, a synth tree with
  our marker); a file, a link or any other folder is refused, untouched;
- the new output is built in a hidden sibling ``.NAME.reiddata-partial-PID-TOKEN``
  whose directory the writing process holds an ``flock`` on; it becomes the output
  in one atomic step: ``renameat2(RENAME_NOREPLACE)`` for a new output (two racing
  writers: exactly one wins, the other is told it exists) or
  ``renameat2(RENAME_EXCHANGE)`` for a replacement, so a kill at any instant leaves
  the old output or the complete new one at the path, never nothing and never a mix;
- where the filesystem cannot exchange, two renames are used and the old output
  waits beside as ``.NAME.reiddata-old-...`` (locked too) until the new one is in
  place; a run killed between them is repaired by the next run (old put back);
- leftovers of killed runs (``kill -9``, power loss) are recognised by their name and
  by nobody holding their lock, and removed by the next run writing that output.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .errors import bad_input

__all__ = ["atomic_output", "check_output", "clean_leftovers", "is_ours_marker"]

log = logging.getLogger("reiddata")

PARTIAL = "reiddata-partial"
OLD = "reiddata-old"
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """Linux renameat2; False where the libc or the filesystem does not offer it."""
    try:
        call = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:
        return False
    if call(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(dst))


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_output(
    out: Path,
    *,
    inputs: Sequence[Path] = (),
    overwrite: bool,
    is_ours: Callable[[Path], bool],
    what: str,
) -> Path:
    """The absolute output path, or an error saying why writing there is refused.

    ``what`` names what ``is_ours`` recognises (e.g. "a reiddata dataset").
    """
    out = Path(os.path.abspath(out))
    real = out.resolve()
    for source in inputs:
        real_in = Path(source).resolve()
        if _inside(real, real_in) or _inside(real_in, real):
            relation = "is" if real == real_in else "lies inside" if _inside(real, real_in) else "holds"
            raise bad_input(
                out,
                f"the output {relation} the input {source}: writing there could destroy the source data",
                "choose an output folder outside the input tree",
            )
    if out.is_symlink():
        raise bad_input(out, "is a symbolic link: reiddata does not write through links", "name the real folder")
    clean_leftovers(out)  # may put back an old output that a killed replacement left aside
    if not out.exists():
        return out
    if not overwrite:
        raise bad_input(out, "already exists", "pass --overwrite to replace it, or choose another output")
    if not out.is_dir():
        raise bad_input(out, f"exists and is a file, not {what}: --overwrite replaces only {what}", "move it away")
    if not is_ours(out):
        raise bad_input(
            out,
            f"exists and is not {what}: --overwrite replaces only {what}, never other folders",
            "choose another output, or move the folder away yourself",
        )
    return out


def _lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on the folder ``path``, or None if another process holds it."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _leftovers(out: Path, kind: str) -> list[Path]:
    prefix = f".{out.name}.{kind}-"
    try:
        return sorted(p for p in out.parent.iterdir() if p.name.startswith(prefix) and p.is_dir())
    except FileNotFoundError:
        return []


def clean_leftovers(out: Path) -> None:
    """Repair or remove what killed runs left beside ``out`` (only unlocked, only our names)."""
    if not out.parent.is_dir():
        return
    for old in _leftovers(out, OLD):  # killed between the two renames of a replacement
        fd = _lock(old)
        if fd is None:
            continue  # a live run is replacing out right now
        try:
            if not out.exists() and not out.is_symlink():
                old.rename(out)
                log.warning("restored %s from %s (a replacement was killed half-way)", out, old.name)
            else:
                shutil.rmtree(old)
                log.warning("removed %s (left by a killed replacement)", old)
        finally:
            os.close(fd)
    for partial in _leftovers(out, PARTIAL):
        fd = _lock(partial)
        if fd is None:
            continue  # another live conversion to the same output
        try:
            shutil.rmtree(partial)
            log.warning("removed %s (a partial output left by a killed run)", partial)
        finally:
            os.close(fd)


def _move_into_place(tmp: Path, out: Path, *, replace: bool, is_ours: Callable[[Path], bool], what: str) -> None:
    if not replace:
        if out.exists() or out.is_symlink():
            raise bad_input(out, "already exists (another run finished writing it first)", "choose another output")
        try:
            if not _renameat2(tmp, out, _RENAME_NOREPLACE):
                os.rename(tmp, out)  # fails on a non-empty folder, which any finished output is
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise bad_input(out, "already exists (another run finished writing it first)") from None
            raise
        return
    if out.is_symlink() or not out.is_dir() or not is_ours(out):  # changed while we were writing
        raise bad_input(out, f"is no longer {what}; refusing to replace it", "check what else writes there")
    if _renameat2(tmp, out, _RENAME_EXCHANGE):
        return  # tmp now holds the old output; the caller removes it
    old = out.parent / f".{out.name}.{OLD}-{os.getpid()}-{secrets.token_hex(4)}"
    fd = _lock(out)
    if fd is None:
        raise bad_input(out, "is being replaced by another run", "wait for it, then try again")
    try:
        os.rename(out, old)  # killed before the next rename: old waits beside, unlocked; the next run puts it back
        os.rename(tmp, out)
        shutil.rmtree(old)
    finally:
        os.close(fd)


@contextmanager
def atomic_output(
    out: Path,
    *,
    overwrite: bool,
    inputs: Sequence[Path] = (),
    is_ours: Callable[[Path], bool],
    what: str,
) -> Iterator[Path]:
    """Yield an empty hidden folder that becomes ``out`` only if the block completes.

    On any error, Ctrl-C or SIGTERM (the CLI turns it into KeyboardInterrupt) the
    folder is removed and ``out`` is as it was. OS errors (read-only parent, disk
    full, a file in the way) become :class:`ReidDataError` naming the path.
    """
    out = check_output(out, inputs=inputs, overwrite=overwrite, is_ours=is_ours, what=what)
    replace = out.exists()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f".{out.name}.{PARTIAL}-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
        fd = _lock(tmp)
    except OSError as exc:
        raise bad_input(out, f"cannot create the output here ({exc.strerror or exc})", "check the path") from None
    try:
        try:
            yield tmp
            _move_into_place(tmp, out, replace=replace, is_ours=is_ours, what=what)
        except OSError as exc:
            raise bad_input(
                out, f"could not write the output ({exc.strerror or exc})", "free space or fix the path"
            ) from None
        finally:
            if fd is not None:
                os.close(fd)
    finally:
        if tmp.exists():  # an error, or the old output after the exchange
            shutil.rmtree(tmp, ignore_errors=True)


def is_ours_marker(name: str) -> Callable[[Path], bool]:
    """``is_ours`` for folders that carry the marker file ``name`` (e.g. synth trees)."""
    return lambda folder: (folder / name).is_file()
