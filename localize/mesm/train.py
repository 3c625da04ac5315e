"""Train MESM: the official recipe on vtr's data pipeline, best checkpoint by val mAP.

Recipe (github lntzm/MESM, `train.py` + `config/*/C+SF_C.json`): AdamW (lr 2e-4,
weight decay 1e-4), gradient-norm clipping at 0.1, StepLR (`lr_drop` epochs, x gamma;
the official QVHighlights setting never fires within its 200 epochs), batches of 12
videos with all their queries, evaluation every epoch on the val split with the
Moment-DETR standalone metrics (`localize.metrics.evaluate_moments`), and the checkpoint
with the best MR-full-mAP kept (`localize.mesm.checkpoint.save_checkpoint`).

Predictions follow MESM's inference: score = softmax(logits)[..., 0], spans (centre,
width) -> (start, end) x duration, sorted by score, clamped to [0, duration] and rounded
to multiples of the clip length; saliency = one score per valid clip.

Deterministic under `TrainConfig.seed` on CPU (parameter init, dropout, data sampling,
word masking and negative sampling all draw from seeded generators); CUDA kernels may
add run-to-run noise.

    result = train_localizer(model_config, train_set, val_set, Path("mesm.ckpt"),
                             TrainConfig(epochs=200), criterion_preset("qvhighlights"))
"""

import csv
import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from rich.progress import Progress

from engine.errors import InputError, NotFoundError
from localize.annotations import MomentQuery, load_charades_sta, load_qvhighlights
from localize.mesm.checkpoint import save_checkpoint
from localize.mesm.config import MesmConfig
from localize.mesm.data import MesmBatch, MesmDataset, make_loader
from localize.mesm.losses import CriterionConfig, MesmCriterion
from localize.mesm.matcher import FOREGROUND, span_cxw_to_xx
from localize.mesm.model import MesmModel, build_model
from localize.metrics import evaluate_moments
from localize.postprocess import snap_to_clips
from localize.types import Moment

log = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "cuda"]
AnnotationFormat = Literal["auto", "qvhighlights", "charades"]
SELECTION_METRIC = "MR-full-mAP"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (official names in comments)."""

    epochs: int = 200  # n_epoch
    lr: float = 2e-4  # lr
    weight_decay: float = 1e-4  # weight_decay
    grad_clip: float = 0.1  # grad_clip (max gradient norm; 0 = off)
    lr_drop: int = 400  # lr_drop (StepLR step, epochs)
    lr_gamma: float = 0.5  # gamma (StepLR factor)
    seed: int = 2018  # seed
    device: Device = "auto"
    eval_every: int = 1  # eval_epoch_interval (epochs)
    # True reproduces the official T2V layers' batch-mixing attention mask in training
    # (`MesmModel.forward(official_masks=...)`); False (default) trains batch-independent,
    # as vtr's localizer and the evaluation here run the model.
    official_masks: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.eval_every < 1 or self.lr_drop < 1:
            raise InputError("TrainConfig: epochs, eval_every and lr_drop must be >= 1")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise InputError("TrainConfig: lr > 0, weight_decay >= 0, grad_clip >= 0 required")


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    train_losses: dict[str, float]  # mean of each weighted term, plus "loss_overall"
    val_brief: dict[str, float | None] | None = None
    seconds: float = 0.0


@dataclass
class TrainResult:
    checkpoint: Path
    best_epoch: int
    best_score: float | None  # MR-full-mAP of the kept checkpoint; None without val
    history: list[EpochRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "best_epoch": self.best_epoch,
            "best_score": self.best_score,
            "selection_metric": SELECTION_METRIC,
            "history": [asdict(r) for r in self.history],
        }


def load_durations(path: Path) -> dict[str, float]:
    """Video durations in seconds: a JSON object {vid: seconds}, or Charades' CSV
    (`Charades_v1_train.csv`: header row, video id first, `length` last)."""
    if not path.is_file():
        raise NotFoundError(f"durations file not found: {path}")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise InputError(f"{path}: expected a JSON object {{vid: seconds}}")
            return {str(k): float(v) for k, v in data.items()}
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        return {row[0]: float(row[-1]) for row in rows[1:] if row}
    except (ValueError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read durations from {path}: {e}") from e


def load_queries(
    path: Path, fmt: AnnotationFormat = "auto", durations: dict[str, float] | None = None
) -> list[MomentQuery]:
    """Annotations of a QVHighlights jsonl or a Charades-STA txt file ("auto": by suffix)."""
    chosen = fmt
    if chosen == "auto":
        chosen = "charades" if path.suffix.lower() == ".txt" else "qvhighlights"
    if chosen == "charades":
        return load_charades_sta(path, durations)
    if chosen == "qvhighlights":
        return load_qvhighlights(path)
    raise InputError(f"unknown annotation format '{fmt}'; use auto, qvhighlights or charades")


def resolve_device(device: str) -> torch.device:
    """ "auto" -> CUDA when available, else CPU; "cuda" without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' requested but torch sees no CUDA GPU")
    if device not in ("cpu", "cuda"):
        raise InputError(f"unknown device '{device}'; use auto, cpu or cuda")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) and numpy's legacy global generator."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def train_step(
    model: MesmModel,
    criterion: MesmCriterion,
    optimizer: torch.optim.Optimizer,
    batch: MesmBatch,
    grad_clip: float,
    generator: torch.Generator | None = None,
    official_masks: bool = False,
) -> dict[str, float]:
    """One optimisation step; returns the weighted loss terms and `loss_overall`."""
    outputs = model(
        batch.video_feat,
        batch.video_mask,
        batch.words_feat,
        batch.words_mask,
        batch.num_clips,
        clip_mask=batch.clip_mask,
        unknown_mask=batch.unknown_mask,
        words_weight=batch.words_weight,
        generator=generator,
        official_masks=official_masks,
    )
    losses, total = criterion(outputs, batch.targets, training=True)
    if not torch.isfinite(total):
        raise InputError(f"training loss is not finite ({float(total)}); terms: {_floats(losses)}")
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    weighted = {k: float(v.detach()) * criterion.weight_dict.get(k, 1.0) for k, v in losses.items()}
    weighted["loss_overall"] = float(total.detach())
    return weighted


def _floats(losses: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: round(float(v.detach()), 4) for k, v in losses.items()}


@torch.no_grad()
def predict(
    model: MesmModel,
    dataset: MesmDataset,
    device: torch.device,
    videos_per_batch: int | None = None,
) -> list[dict[str, Any]]:
    """QVHighlights-format prediction rows for every query of `dataset`, in dataset order."""
    model.eval()
    clip_len = dataset.config.clip_len_s
    rows: dict[Any, dict[str, Any]] = {}
    loader = make_loader(
        dataset,
        shuffle=False,
        videos_per_batch=videos_per_batch or dataset.config.eval_videos_per_batch,
    )
    for cpu_batch in loader:
        batch = cpu_batch.to(device)
        out = model(
            batch.video_feat,
            batch.video_mask,
            batch.words_feat,
            batch.words_mask,
            batch.num_clips,
            with_negative=False,
            official_masks=False,
        )
        scores = out["pred_logits"].softmax(-1)[..., FOREGROUND].cpu()  # (N, Q)
        spans = span_cxw_to_xx(out["pred_spans"]).cpu()  # (N, Q, 2) fractions
        saliency = out["saliency_scores"].float().cpu()  # (N, L)
        lengths = batch.video_mask.sum(1).cpu().tolist()
        for n, qid in enumerate(cpu_batch.qids):
            duration = float(cpu_batch.duration_s[n])
            windows = spans[n] * duration  # (Q, 2) seconds
            moments = sorted(
                (
                    Moment(float(s), float(e), float(p))
                    for (s, e), p in zip(windows, scores[n], strict=True)
                ),
                key=lambda m: -m.score,
            )
            moments = snap_to_clips(moments, clip_len, duration)
            rows[qid] = {
                "qid": qid,
                "query": cpu_batch.queries[n],
                "vid": cpu_batch.vids[n],
                "pred_relevant_windows": [[m.start_s, m.end_s, m.score] for m in moments],
                "pred_saliency_scores": saliency[n, : int(lengths[n])].tolist(),
            }
    return [rows[q.qid] for q in dataset.queries]


def evaluate(
    model: MesmModel, dataset: MesmDataset, device: torch.device
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Standalone-eval metrics of `model` on `dataset` and the predictions behind them."""
    predictions = predict(model, dataset, device)
    metrics = evaluate_moments(dataset.queries, predictions, clip_seconds=dataset.config.clip_len_s)
    return metrics, predictions


def train_localizer(
    model_config: MesmConfig,
    train_set: MesmDataset,
    val_set: MesmDataset | None,
    out_path: Path,
    train_config: TrainConfig,
    criterion_config: CriterionConfig,
    progress: Progress | None = None,
    model: MesmModel | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train for `train_config.epochs`; keep the checkpoint with the best val MR-full-mAP.

    Without `val_set` the last epoch's weights are saved. `model` (e.g. loaded from a
    checkpoint) replaces the fresh seeded initialisation. `progress`, when given, gets
    one task for the epochs and one for the batches of the running epoch.
    """
    _check_compatible(model_config, train_set)
    if val_set is not None:
        _check_compatible(model_config, val_set)
    device = resolve_device(train_config.device)
    seed_everything(train_config.seed)
    if model is None:
        model = build_model(model_config, seed=train_config.seed)
    model.to(device)
    criterion = MesmCriterion(criterion_config, dec_layers=model_config.dec_layers).to(device)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=train_config.lr,
        weight_decay=train_config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, train_config.lr_drop, gamma=train_config.lr_gamma
    )
    loader = make_loader(train_set, shuffle=True, seed=train_config.seed)
    vocab = train_set.vocab
    vocab_ids = [] if vocab is None else list(vocab.ranked_ids[: vocab.size])  # for resuming
    sample_gen = torch.Generator().manual_seed(train_config.seed)  # masking, negatives
    log.info(
        "training MESM on %s: %d queries in %d videos, %d batches per epoch, %d epochs",
        device,
        len(train_set.queries),
        len(train_set),
        len(loader),
        train_config.epochs,
    )

    epoch_task = progress.add_task("epochs", total=train_config.epochs) if progress else None
    batch_task = progress.add_task("batches", total=len(loader)) if progress else None
    history: list[EpochRecord] = []
    best_score: float | None = None
    best_epoch = 0
    for epoch in range(1, train_config.epochs + 1):
        started = time.perf_counter()
        model.train()
        sums: dict[str, float] = defaultdict(float)
        steps = 0
        if progress is not None and batch_task is not None:
            progress.reset(batch_task, total=len(loader), description=f"epoch {epoch}")
        for cpu_batch in loader:
            terms = train_step(
                model,
                criterion,
                optimizer,
                cpu_batch.to(device),
                train_config.grad_clip,
                sample_gen,
                train_config.official_masks,
            )
            for k, v in terms.items():
                sums[k] += v
            steps += 1
            if progress is not None and batch_task is not None:
                progress.update(
                    batch_task,
                    advance=1,
                    description=f"epoch {epoch} loss {terms['loss_overall']:.3f}",
                )
        scheduler.step()
        record = EpochRecord(epoch, {k: v / max(steps, 1) for k, v in sums.items()})

        evaluate_now = val_set is not None and (
            epoch % train_config.eval_every == 0 or epoch == train_config.epochs
        )
        if evaluate_now and val_set is not None:
            metrics, _ = evaluate(model, val_set, device)
            record.val_brief = metrics["brief"]
            score = metrics["brief"].get(SELECTION_METRIC)
            score_value = float(score) if score is not None else -math.inf
            if best_score is None or score_value > best_score:
                best_score, best_epoch = score_value, epoch
                _save(out_path, model, epoch, record, train_config, criterion_config, vocab_ids)
                log.info(
                    "epoch %d: %s %.2f (best so far), saved %s",
                    epoch,
                    SELECTION_METRIC,
                    score_value,
                    out_path,
                )
            else:
                log.info(
                    "epoch %d: %s %.2f (best %.2f at epoch %d)",
                    epoch,
                    SELECTION_METRIC,
                    score_value,
                    best_score,
                    best_epoch,
                )
        elif val_set is None and epoch == train_config.epochs:
            best_epoch = epoch
            _save(out_path, model, epoch, record, train_config, criterion_config, vocab_ids)
        record.seconds = time.perf_counter() - started
        history.append(record)
        log.info(
            "epoch %d: train loss %.4f (%.1f s)",
            epoch,
            record.train_losses.get("loss_overall", math.nan),
            record.seconds,
        )
        if on_epoch is not None:
            on_epoch(record)
        if progress is not None and epoch_task is not None:
            progress.update(epoch_task, advance=1)
    return TrainResult(out_path, best_epoch, best_score, history)


def _check_compatible(model_config: MesmConfig, dataset: MesmDataset) -> None:
    """The dataset's feature widths must be what the model expects."""
    item = dataset[0][0]
    if item.video_feat.shape[1] != model_config.v_feat_dim:
        raise InputError(
            f"video features are {item.video_feat.shape[1]}-d (TEF included) but the model "
            f"expects v_feat_dim={model_config.v_feat_dim}"
        )
    if item.words_feat.shape[1] != model_config.t_feat_dim:
        raise InputError(
            f"text token features are {item.words_feat.shape[1]}-d but the model expects "
            f"t_feat_dim={model_config.t_feat_dim}"
        )
    if dataset.vocab is not None and dataset.vocab.size != model_config.vocab_size:
        raise InputError(
            f"word vocabulary has {dataset.vocab.size} entries but the model expects "
            f"vocab_size={model_config.vocab_size}"
        )


def _save(
    path: Path,
    model: MesmModel,
    epoch: int,
    record: EpochRecord,
    train_config: TrainConfig,
    criterion_config: CriterionConfig,
    vocab_ids: list[int],
) -> None:
    save_checkpoint(
        path,
        model,
        extra={
            "vocab_ids": vocab_ids,
            "epoch": epoch,
            "val_brief": record.val_brief,
            "train_config": asdict(train_config),
            "criterion_config": asdict(criterion_config),
        },
    )
