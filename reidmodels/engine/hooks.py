"""What a run does beside training, as fast-reid's hooks: the per-step trace, evaluation
every N epochs, the per-epoch log and a progress bar. None of it changes what is trained."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import torch

from ..evaluation.features import extract_features, test_rows
from ..evaluation.run import EvalConfig, score

__all__ = ["Trace", "evaluate_now", "progress", "write_log"]


class Trace:
    """``trace-rank<r>.jsonl``: one line per step (step, stage, epoch, loss, the batch's sample keys).

    On resume, lines after the checkpoint's step (written before the job died) are dropped first.
    """

    def __init__(self, out: Path, rank: int, step: int) -> None:
        self.path = out / f"trace-rank{rank}.jsonl"
        kept = []  # a fresh run (step 0) starts an empty trace
        if step and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines() if json.loads(line)["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, step: int, stage: str, epoch: int, keys: list[str], loss: float) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, "stage": stage, "epoch": epoch + 1, "loss": loss, "keys": keys}) + "\n")


def evaluate_now(run, where: tuple[str, int, int]) -> None:
    """Score the model as it is on every protocol, through the same path as ``evaluate``
    (features split over the ranks, ranked on rank 0); log and append to ``eval_log.csv``.

    Random states are put back afterwards, so a run with ``eval_every`` trains exactly as
    one without (a data loader draws its workers' seeds from torch's generator)."""
    from reiddata import open_dataset

    config, model = run.config, run.model
    rng = torch.get_rng_state()
    data = open_dataset(config.eval_data or config.data)
    eval_config = EvalConfig(data=config.eval_data or config.data, checkpoint="", out=config.out)
    rows = test_rows(data)
    model.eval()
    saved = run.saved
    features, predictions = extract_features(
        model, data, rows, recipe=saved["recipe"], facts=saved["facts"], batch_size=eval_config.batch_size,
        workers=config.workers, device=run.device, clip_mode=None, clip_length=None, rank=run.rank, world=run.world,
    )  # fmt: skip
    model.train()
    torch.set_rng_state(rng)
    if run.rank != 0:
        return
    metrics, _, _ = score(model, data, rows, features, predictions, eval_config, run.device)
    _log_evaluation(Path(config.out) / "eval_log.csv", metrics, data.protocols, where)


def _log_evaluation(log: Path, metrics: dict, protocols, where: tuple[str, int, int]) -> None:
    stage, epoch, step = where
    fields = ["step", "stage", "epoch", "protocol", "mAP", "rank1", "mINP"]
    with log.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if f.tell() == 0:
            writer.writeheader()
        for name in protocols:
            m = metrics[name]
            row = {"step": step, "stage": stage, "epoch": epoch, "protocol": name}
            writer.writerow(row | {k: m[k] for k in fields[4:]})
            print(f"eval {stage} epoch {epoch} {name}: mAP {m['mAP']:.4f} rank-1 {m['rank1']:.4f}", file=sys.stderr)


def progress(rank: int, desc: str):
    """The loader, with a progress bar on rank 0 when stderr is a terminal (logs get one line per epoch instead)."""

    def bar(loader):
        if rank != 0 or not sys.stderr.isatty():
            return loader
        from tqdm import tqdm

        return tqdm(loader, desc=desc, leave=False, mininterval=2.0)

    return bar


def write_log(path: Path, rows: list[dict]) -> None:
    """``train_log.csv``: one row per epoch (step counts epochs here), stage and mean loss."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "stage", "epoch", "loss"])
        writer.writeheader()
        for step, row in enumerate(rows, start=1):
            writer.writerow({"step": step, **row})
