"""The ``reiddata`` command: sources, synth, convert, stats, show, verify."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from ._version import __version__
from .defaults import DEFAULT_IDENTITIES, DEFAULT_SHARD_SIZE
from .errors import ReidDataError

__all__ = ["main"]


def _sources(args: argparse.Namespace) -> int:
    from .sources import SOURCES
    from .synthetic.layouts import LAYOUTS

    for name, source in sorted(SOURCES.items()):
        attrs = f"attributes: {source.attributes.name}" if source.attributes else "attributes: none"
        synth = "synth: yes" if name in LAYOUTS else "synth: no"
        print(f"{name}: {source.title}\n  splits: {', '.join(source.splits)}; {attrs}; {synth}")
        print("  " + source.layout.replace("\n", "\n  ") + "\n")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from .synthetic import synth

    out = synth(
        args.source,
        Path(args.out),
        identities=args.identities,
        seed=args.seed,
        variant=args.variant,
        overwrite=args.overwrite,
        distractors=args.distractors,
    )
    print(f"wrote synthetic {args.source} to {out}")
    return 0


def _custom_source(args: argparse.Namespace):
    """(source, root) of ``convert table`` and ``convert folder``; the name as given otherwise."""
    from .custom import folder_source, table_source

    if args.source == "table":
        return table_source(Path(args.root), root=Path(args.table_root) if args.table_root else None, spec=args.spec)
    if args.source == "folder":
        if not args.pattern:
            raise ReidDataError("convert folder needs --pattern REGEX (named groups pid, camid; see --help)")
        spec = Path(args.spec) if args.spec else None
        source = folder_source(
            Path(args.root), pattern=args.pattern, splits=args.split, drop_pids=args.drop_pid, spec=spec, name=args.name
        )
        return source, Path(args.root)
    for option in ("pattern", "split", "drop_pid", "spec", "table_root", "name"):
        if getattr(args, option):
            raise ReidDataError(f"--{option.replace('_', '-')} is for `convert table` and `convert folder`")
    return args.source, Path(args.root)


def _convert(args: argparse.Namespace) -> int:
    from .conversion import convert

    source, root = _custom_source(args)
    manifest = convert(
        source,
        root,
        Path(args.out),
        attributes=Path(args.attributes) if args.attributes else None,
        shard_size=args.shard_size,
        workers=args.workers,
        overwrite=args.overwrite,
        decode_check=args.decode_check,
        storage=args.store,
        progress=not args.quiet,
        distractors=Path(args.distractors) if args.distractors else None,
    )
    splits = ", ".join(f"{k} {v['samples']}" for k, v in manifest["splits"].items())
    print(f"{args.out}: {manifest['source']} version {manifest['version']} ({splits})")
    if manifest["attributes"] is None and manifest["source"] in _with_schema():
        print("note: no attribute file found or given: converted without attributes")
    for reason, count in manifest["dropped"].items():
        print(f"dropped {count}: {reason}")
    for reason, count in manifest["ignored"].items():
        print(f"ignored {count}: {reason}")
    return 0


def _with_schema() -> set[str]:
    from .sources import SOURCES

    return {n for n, s in SOURCES.items() if s.attributes is not None}


def _stats(args: argparse.Namespace) -> int:
    from .stats import dataset_stats, format_stats, headline_stats, write_plots

    stats = dataset_stats(args.dataset)
    print(format_stats(stats), end="")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
    if args.metrics:
        Path(args.metrics).parent.mkdir(parents=True, exist_ok=True)
        Path(args.metrics).write_text(json.dumps(headline_stats(stats), indent=2, sort_keys=True) + "\n")
    if args.plots:
        write_plots(stats, Path(args.plots))
    return 0


def _show(args: argparse.Namespace) -> int:
    from .pages import show

    try:
        ids = [int(i) for i in args.ids.split(",")] if args.ids else None
    except ValueError:
        raise ReidDataError(f"--ids {args.ids!r}: write pids as comma-separated integers, e.g. --ids 2,7,42") from None
    out = args.out or f"show-{Path(str(args.dataset).rstrip('/')).name or 'dataset'}"
    built = show(
        args.dataset,
        out,
        png=args.png,
        ids=ids,
        workers=args.workers,
        clip_mode=args.clip_mode,
        clip_length=args.clip_length,
        frames=args.frames,
        per_page=args.per_page,
        progress=not args.quiet,
    )
    for w in built["warnings"][:20]:
        frame = "" if w["frame"] is None else f" frame {w['frame']}"
        print(f"warning: {w['key']}{frame} did not decode ({w['error']}): shown crossed out", file=sys.stderr)
    if len(built["warnings"]) > 20:
        print(f"warning: ... {len(built['warnings']) - 20} more, listed on the page", file=sys.stderr)
    for path in built["png"]:
        print(f"contact sheet: {path}")
    mb = built["bytes"] / 2**20
    print(f"{built['page']}: {built['thumbnails']} thumbnails, {mb:.1f} MB, built in {built['seconds']:.1f} s")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .verify import verify

    problems = verify(args.dataset)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{args.dataset}: ok")
    return 0


# long, as a table is: one argparse declaration per option; split, the CLI would read in pieces
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reiddata", description=__doc__)
    parser.add_argument("--version", action="version", version=f"reiddata {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sources", help="list the sources and the layout each expects")
    p.set_defaults(run=_sources)

    p = sub.add_parser("synth", help="write a synthetic tree in a source's real layout")
    p.add_argument("source")
    p.add_argument("out")
    p.add_argument(
        "--identities", type=int, default=DEFAULT_IDENTITIES, help=f"people, half train (default {DEFAULT_IDENTITIES})"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--variant",
        default=None,
        help="layout variant (msmt17, g2a-vreid: v1 or v2; agreid-v2: flat or nested; default: the usual one)",
    )
    p.add_argument(
        "--distractors",
        type=int,
        default=0,
        help="image sources: also write N unlabeled crops (people not in the set, false detections) "
        "into OUT/distractors/, for `convert --distractors`",
    )
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=_synth)

    p = sub.add_parser(
        "convert",
        help="convert a source tree into versioned shards",
        description="SOURCE is a registered source (`reiddata sources`), `table` (ROOT is a CSV, Parquet or "
        "JSON-lines table) or `folder` (file names parsed by --pattern).",
    )
    p.add_argument("source")
    p.add_argument("root", help="the source's folder; for `table`, the table file")
    p.add_argument("out")
    p.add_argument("--root", dest="table_root", default=None, help="table: the folder its paths are relative to")
    p.add_argument("--spec", default=None, help="table, folder: a YAML spec (default: TABLE.yaml beside the table)")
    p.add_argument(
        "--pattern",
        default=None,
        help="folder: a regex matched against each .jpg's name, with named groups pid, camid "
        "(optional view, tracklet, frame)",
    )
    p.add_argument(
        "--split",
        action="append",
        default=None,
        metavar="NAME=SUBFOLDER",
        help="folder: a split and its sub-folder, repeated (default: every sub-folder, by its name)",
    )
    p.add_argument("--drop-pid", action="append", default=None, help="folder: drop (and count) this pid, e.g. -1")
    p.add_argument("--name", default=None, help="folder: the dataset's name (default: the folder's)")
    p.add_argument("--attributes", default=None, help="attribute .mat file (default: found next to the data)")
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="samples per shard")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="processes writing shards")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--decode-check", action="store_true", help="fully decode every image (slower)")
    p.add_argument(
        "--store",
        choices=("jpeg", "video"),
        default="jpeg",
        help="tracklets: JPEG frames as they are, or one lossy MP4 per tracklet (smaller; decord reads it)",
    )
    p.add_argument(
        "--distractors",
        default=None,
        metavar="DIR",
        help="image sources: a folder of unlabeled JPEG crops (e.g. Market-1501's 500k set) added as the "
        "distractors split; each protocol P gets a twin P-distractors with them in its gallery",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_convert)

    p = sub.add_parser("stats", help="what is in a converted dataset")
    p.add_argument("dataset")
    p.add_argument("--json", default=None, help="also write the figures as JSON")
    p.add_argument("--metrics", default=None, help="also write the headline figures as JSON (for DVC metrics)")
    p.add_argument("--plots", default=None, help="also write PNG plots into this folder")
    p.set_defaults(run=_stats)

    p = sub.add_parser("show", help="a page to browse a converted dataset (local or URL), opens from disk")
    p.add_argument("dataset")
    p.add_argument("--out", default=None, help="page folder (default: show-NAME in the current folder)")
    p.add_argument("--png", action="store_true", help="also write PNG contact sheets (OUT/png/identity-PID.png)")
    p.add_argument("--ids", default=None, help="pids for --png, comma-separated (default: 8 seen by most cameras)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes making thumbnails")
    p.add_argument("--clip-mode", default="tsn", help="tracklets: the sampler whose frames are marked (default tsn)")
    p.add_argument("--clip-length", type=int, default=8, help="tracklets: frames the sampler takes (default 8)")
    p.add_argument("--frames", type=int, default=12, help="tracklets: frames shown per filmstrip (default 12)")
    p.add_argument("--per-page", type=int, default=20, help="identities per page (default 20)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_show)

    p = sub.add_parser("verify", help="check shard hashes and counts against the manifest")
    p.add_argument("dataset")
    p.set_defaults(run=_verify)
    return parser


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up exactly like Ctrl-C: partial outputs are removed


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="note: %(message)s", level=logging.WARNING)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.run(args))
    except ReidDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path we were given cannot be read or written: say which, no traceback
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was left half-written", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
