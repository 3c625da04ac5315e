"""`vtr eval ...`: score prediction files against ground truth.

    vtr eval moments --gt highlight_val_release.jsonl --pred val_preds.jsonl
    vtr eval moments --gt charades_sta_test.txt --gt-format charades --pred preds.jsonl --json

`moments` computes Moment-DETR's standalone-eval metrics (localize.metrics): a table for
people, or with `--json` the reference's JSON layout (`brief`, then one block per
length bucket and highlight level).
"""

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli.output import emit, print_table, stdout
from localize.annotations import load_charades_sta, load_predictions, load_qvhighlights
from localize.metrics import evaluate_moments

eval_app = typer.Typer(help="Evaluate predictions against ground truth.", no_args_is_help=True)

BUCKETS = ("full", "short", "middle", "long")
HL_LEVELS = ("Fair", "Good", "VeryGood")


class GtFormat(StrEnum):
    qvhighlights = "qvhighlights"
    charades = "charades"


def _cell(block: dict[str, Any] | None, key: str) -> str:
    if block is None or key not in block:
        return "-"
    return f"{block[key]:.2f}"


def _render(metrics: dict[str, Any], n_queries: int) -> None:
    rows = []
    for bucket in BUCKETS:
        if bucket not in metrics:
            rows.append((bucket, *["-"] * 7))
            continue
        r1, ap = metrics[bucket]["MR-R1"], metrics[bucket]["MR-mAP"]
        rows.append(
            (
                bucket,
                _cell(r1, "0.3"),
                _cell(r1, "0.5"),
                _cell(r1, "0.7"),
                _cell(r1, "miou"),
                _cell(ap, "0.5"),
                _cell(ap, "0.75"),
                _cell(ap, "average"),
            )
        )
    print_table(
        f"moment retrieval ({n_queries} queries, %)",
        ["windows", "R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "mAP@0.5", "mAP@0.75", "mAP"],
        rows,
    )
    hl_rows = [
        (
            level,
            _cell(metrics[f"HL-min-{level}"], "HL-mAP"),
            _cell(metrics[f"HL-min-{level}"], "HL-Hit1"),
        )
        for level in HL_LEVELS
        if f"HL-min-{level}" in metrics
    ]
    if hl_rows:
        print_table("highlight detection (%)", ["min score", "HL-mAP", "HIT@1"], hl_rows)
    else:
        stdout.print("highlight detection: not evaluated (no saliency scores on both sides)")


@eval_app.command("moments")
def eval_moments(
    gt: Annotated[Path, typer.Option("--gt", help="Ground-truth annotations file.")],
    pred: Annotated[
        Path, typer.Option("--pred", help="Predictions, QVHighlights jsonl (one line per qid).")
    ],
    gt_format: Annotated[
        GtFormat,
        typer.Option(
            "--gt-format",
            help="qvhighlights: jsonl; charades: 'VID START END##sentence' lines, "
            "qid = 0-based line number.",
        ),
    ] = GtFormat.qvhighlights,
    clip_seconds: Annotated[
        float, typer.Option(help="Saliency clip length in seconds (QVHighlights: 2).")
    ] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics JSON.")] = False,
) -> None:
    """Moment retrieval (R1, mAP, mIoU) and highlight (HL-mAP, HIT@1) metrics."""
    queries = load_qvhighlights(gt) if gt_format is GtFormat.qvhighlights else load_charades_sta(gt)
    metrics = evaluate_moments(queries, load_predictions(pred), clip_seconds=clip_seconds)
    emit(as_json, metrics, lambda: _render(metrics, len(queries)))
