"""The ``reidmodels`` command: ``train`` and ``evaluate`` driven by a params.yaml section.

reidmodels train --params params.yaml [--section train ...] [--data PATH] [--out PATH] [--report DIR]
reidmodels evaluate --params params.yaml [--section evaluate ...] [--data PATH] [--checkpoint PATH] [--out PATH]
    [--rerank [zhong|transreid]] [--report DIR]
reidmodels extract RUN INPUT OUT.parquet [--half] [--skip-bad]
reidmodels export RUN OUT.onnx [--mode composed|simplified]
reidmodels summary --params params.yaml --reports reports/runs [--stats reports/stats] --out reports/summary.md
torchrun --nproc_per_node N -m reidmodels train --params params.yaml     # DDP
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__

__all__ = ["main"]


# long, as a table is: one argparse declaration per option; split, the CLI would read in pieces
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reidmodels", description="CLIP-based ReID models on reiddata shards")
    parser.add_argument("--version", action="version", version=f"reidmodels {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, section in (("train", "train"), ("evaluate", "evaluate")):
        p = sub.add_parser(name, help=f"{name} from a params.yaml section")
        p.add_argument("--params", default="params.yaml", help="YAML file with the config sections")
        p.add_argument(
            "--section",
            action="append",
            help=f"section to read, a key or dotted path; repeat to merge, later wins (default: {section})",
        )
        p.add_argument(
            "--data",
            nargs="+" if name == "train" else None,
            default=None,
            help="converted dataset (overrides the section)"
            + ("; several train on all at once, ids and cameras namespaced per dataset" if name == "train" else ""),
        )
        p.add_argument("--out", default=None, help="output folder (overrides the section)")
        if name == "evaluate":
            p.add_argument("--checkpoint", default=None, help="run folder or checkpoint.pt (overrides the section)")
            p.add_argument(
                "--rerank",
                nargs="?",
                const="zhong",
                default=None,
                choices=["zhong", "transreid"],
                help="k-reciprocal re-ranking: zhong (k1 20, k2 6, lambda 0.3; the default) "
                "or transreid (50, 15, 0.3: the evaluator CLIP-ReID keeps)",
            )
            p.add_argument(
                "--report",
                default=None,
                metavar="DIR",
                help="also write the failure report page: per protocol the worst and a random sample of "
                "queries with their top-k gallery, CMC and a t-SNE map (DIR/index.html)",
            )
        else:
            p.add_argument("--report", default=None, help="also write DIR/train.json (time) and DIR/loss.csv")
    p = sub.add_parser("extract", help="features of a folder of crops, tracklet folders or a dataset, as Parquet")
    p.add_argument("run", help="run folder or checkpoint.pt")
    p.add_argument("input", help="a folder of crops (any nesting), of tracklet folders, or a converted dataset")
    p.add_argument("out", help="the Parquet file to write")
    p.add_argument("--half", action="store_true", help="store features as float16")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2, help="processes decoding and resizing")
    p.add_argument("--device", default="auto")
    p.add_argument("--skip-bad", action="store_true", help="exit 0 even when some files did not decode")
    p.add_argument("--overwrite", action="store_true")
    p = sub.add_parser("export", help="the test-feature graph as ONNX, checked by onnxruntime")
    p.add_argument("run", help="run folder or checkpoint.pt")
    p.add_argument("out", help="the .onnx file to write")
    p.add_argument("--mode", default=None, help="PromptSG: composed (default) or simplified")
    p.add_argument("--view", default="ground", help="the view fixed in the graph (LATex)")
    p.add_argument("--camid", type=int, default=None, help="the camera fixed in the graph (SIE)")
    p.add_argument("--clip-length", type=int, default=None, help="video: frames per clip (default: the recipe's)")
    p = sub.add_parser("summary", help="one table and chart of every run's metrics")
    p.add_argument("--params", default="params.yaml", help="YAML file with the runs section")
    p.add_argument("--reports", default="reports/runs", help="folder of METHOD/SOURCE/{metrics,train}.json")
    p.add_argument("--stats", default=None, help="folder of SOURCE.json from `reiddata stats --metrics`")
    p.add_argument("--cross", default=None, help="folder of NAME/metrics.json of the cross_domain evaluations")
    p.add_argument("--out", default="reports/summary.md", help="the table (Markdown); a PNG is written beside it")
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
    from .engine import TrainConfig, load_config, train
    from .evaluation import EvalConfig, evaluate

    if args.command == "extract":
        return _extract(args)
    if args.command == "export":
        from .export import export_onnx

        result = export_onnx(
            args.run, args.out, mode=args.mode, view=args.view, camid=args.camid, clip_length=args.clip_length
        )
        print(
            f"{result['out']}: input {result['input_shape']} uint8, features {result['feature_size']}; "
            f"onnxruntime vs torch on 8 random inputs: largest absolute difference {result['max_abs_diff']:.2e}"
        )
        return 0
    if args.command == "summary":
        from .report import write_summary

        print(write_summary(params=args.params, reports=args.reports, out=args.out, stats=args.stats, cross=args.cross))
        return 0
    sections = args.section or [args.command]
    if args.command == "train":
        data = args.data[0] if args.data and len(args.data) == 1 else args.data
        config = load_config(TrainConfig, args.params, sections, data=data, out=args.out)
        result = train(config)
        print(json.dumps(result))  # one line per rank: its batches and parameter hash
        if args.report and result["rank"] == 0:
            from .report import write_train_report

            write_train_report(run=config.out, result=result, out=args.report)
        return 0
    rerank = True if args.rerank == "zhong" else args.rerank
    config = load_config(
        EvalConfig, args.params, sections, data=args.data, out=args.out, checkpoint=args.checkpoint, rerank=rerank,
        report=args.report,
    )  # fmt: skip
    metrics = evaluate(config)
    for name, m in metrics.items():
        if isinstance(m, dict) and "mAP" in m:  # a protocol (not an extra metric such as Cerberus's PAR)
            print(
                f"{name}: mAP {m['mAP']:.4f}  rank-1 {m['rank1']:.4f}  mINP {m['mINP']:.4f}  "
                f"(chance mAP {m['chance_mAP']:.4f})"
            )
    return 0


def _extract(args) -> int:
    from .extract import extract

    result = extract(
        args.run, args.input, args.out, half=args.half, batch_size=args.batch_size, workers=args.workers,
        device=args.device, overwrite=args.overwrite,
    )  # fmt: skip
    for path, why in result.failed[:20]:
        print(f"skipped {path}: {why}", file=sys.stderr)
    if result.failed:
        print(f"{len(result.failed)} inputs did not decode: listed in {result.out}.failed.txt", file=sys.stderr)
    print(f"{result.out}: {result.rows} features in {result.seconds:.1f} s")
    return 1 if result.failed and not args.skip_bad else 0


if __name__ == "__main__":
    sys.exit(main())
