"""The ``reidmodels`` command: ``train`` and ``evaluate`` driven by a params.yaml section.

reidmodels train --params params.yaml [--section train] [--data PATH] [--out PATH]
reidmodels evaluate --params params.yaml [--section evaluate] [--data PATH] [--checkpoint PATH] [--out PATH]
torchrun --nproc_per_node N -m reidmodels train --params params.yaml     # DDP
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reidmodels", description="CLIP-based ReID models on reiddata shards")
    parser.add_argument("--version", action="version", version=f"reidmodels {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, section in (("train", "train"), ("evaluate", "evaluate")):
        p = sub.add_parser(name, help=f"{name} from a params.yaml section")
        p.add_argument("--params", default="params.yaml", help="YAML file with the config sections")
        p.add_argument("--section", default=section, help=f"section to read (default: {section})")
        p.add_argument("--data", default=None, help="converted dataset (overrides the section)")
        p.add_argument("--out", default=None, help="output folder (overrides the section)")
        if name == "evaluate":
            p.add_argument("--checkpoint", default=None, help="run folder or checkpoint.pt (overrides the section)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from reiddata import ReidDataError

    try:
        return _run(args)
    except (ReidDataError, ValueError, FileNotFoundError) as exc:  # bad input: say what, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from .engine import EvalConfig, TrainConfig, evaluate, load_config, train

    if args.command == "train":
        config = load_config(TrainConfig, args.params, args.section, data=args.data, out=args.out)
        print(json.dumps(train(config)))  # one line per rank: its batches and parameter hash
        return 0
    config = load_config(
        EvalConfig, args.params, args.section, data=args.data, out=args.out, checkpoint=args.checkpoint
    )
    metrics = evaluate(config)
    for name, m in metrics.items():
        if isinstance(m, dict):
            print(
                f"{name}: mAP {m['mAP']:.4f}  rank-1 {m['rank1']:.4f}  mINP {m['mINP']:.4f}  "
                f"(chance mAP {m['chance_mAP']:.4f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
