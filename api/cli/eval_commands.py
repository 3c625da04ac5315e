"""`vtr eval ...`: score prediction files against ground truth.

    vtr eval moments --gt highlight_val_release.jsonl --pred val_preds.jsonl
    vtr eval moments --gt charades_sta_test.txt --gt-format charades --pred preds.jsonl --json

`moments` computes Moment-DETR's standalone-eval metrics (localize.metrics): a table for
people, or with `--json` the reference's JSON layout (`brief`, then one block per
length bucket and highlight level).

`corpus` runs every query of an annotation file through the full search on an indexed
collection (api/corpus_eval.py) and prints VCMR / SVMR / VR recalls and per-stage
latencies:

    vtr eval corpus --annotations annotations.jsonl --collection synth --pred-out p.jsonl
    vtr eval corpus --annotations annotations.jsonl --stage1-only --levels global,action
"""

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from api.cli.output import emit, print_table, stderr, stdout
from api.cli.state import state_of
from api.corpus_eval import LATENCY_KEYS, CorpusEvalOptions, CorpusEvalResult, evaluate_collection
from localize.annotations import (
    load_charades_sta,
    load_predictions,
    load_qvhighlights,
    write_predictions,
    write_qvhighlights,
)
from localize.corpus_metrics import IOU_THRESHOLDS, RECALL_KS
from localize.metrics import evaluate_moments
from localize.registry import LOCALIZERS

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


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _render_corpus(result: CorpusEvalResult, files: dict[str, str | None]) -> None:
    settings = result.settings
    mode = "stage 1 only" if settings["stage1_only"] else f"two-stage, {settings['localizer']}"
    stdout.print(
        f"{result.n_queries} queries on collection {settings['collection']!r} ({mode}; "
        f"levels {', '.join(settings['levels'])}; top {settings['top_k']} moments)",
        highlight=False,
    )
    columns = ["", *[f"R@{k}" for k in RECALL_KS]]
    rows: list[tuple[object, ...]] = []
    for task, block in (("VCMR", result.vcmr), ("SVMR", result.svmr)):
        for t in IOU_THRESHOLDS:
            rows.append((f"{task} IoU {t}", *[f"{block[f'{t}-r{k}']:.2f}" for k in RECALL_KS]))
    rows.append(("VR", *[f"{result.vr[f'r{k}']:.2f}" for k in RECALL_KS]))
    print_table("corpus retrieval (%)", columns, rows)
    print_table(
        "latency per query (ms)",
        ["stage", "p50", "p99", "mean"],
        [
            (
                key,
                _ms(result.latency_ms[key]["p50"]),
                _ms(result.latency_ms[key]["p99"]),
                _ms(result.latency_ms[key]["mean"]),
            )
            for key in LATENCY_KEYS
        ],
    )
    if result.skipped:
        reasons: dict[str, int] = {}
        for s in result.skipped:
            reasons[s.reason] = reasons.get(s.reason, 0) + 1
        examples = ", ".join(f"{s.qid} ({s.vid})" for s in result.skipped[:5])
        stdout.print(
            f"skipped {len(result.skipped)} queries: "
            + "; ".join(f"{n} {reason}" for reason, n in reasons.items())
            + f"; e.g. qid {examples}",
            highlight=False,
        )
    if files["predictions"]:
        stdout.print(
            f"predictions: {files['predictions']}; standalone eval: vtr eval moments "
            f"--gt {files['ground_truth']} --pred {files['predictions']}",
            highlight=False,
        )


@eval_app.command("corpus")
def eval_corpus(
    ctx: typer.Context,
    annotations: Annotated[
        Path, typer.Option("--annotations", help="QVHighlights jsonl; `vid` = a video's stem.")
    ],
    collection: Annotated[
        str | None, typer.Option("--collection", "-c", help="Default: search.default_collection.")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Moments kept per query.")] = 100,
    pred_out: Annotated[
        Path | None, typer.Option("--pred-out", help="Write predictions (QVHighlights jsonl).")
    ] = None,
    stage1_only: Annotated[
        bool, typer.Option("--stage1-only", help="Stage-1 segments as moments, no localizer.")
    ] = False,
    levels: Annotated[
        str | None,
        typer.Option(help="Comma-separated levels to fuse (others weigh 0): global,action,entity."),
    ] = None,
    localizer: Annotated[
        str | None,
        typer.Option(help=f"Override [localizer] name: {', '.join(sorted(LOCALIZERS))}."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Only the first N queries of the file.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """VCMR / SVMR / VR recall and latency of the full search over annotated queries."""
    queries = load_qvhighlights(annotations)
    state = state_of(ctx)
    options = CorpusEvalOptions(
        collection=collection,
        top_k=top_k,
        stage1_only=stage1_only,
        levels=None if levels is None else tuple(x.strip() for x in levels.split(",") if x.strip()),
        localizer=localizer,
        limit=limit,
    )
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    # On a terminal only: a log file or a pipe gets no bar.
    with Progress(*columns, console=stderr, transient=True, disable=not stderr.is_terminal) as bar:
        task = bar.add_task("queries", total=None)
        result = evaluate_collection(
            state.settings,
            state.catalog,
            queries,
            options,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    files: dict[str, str | None] = {"predictions": None, "ground_truth": None}
    if pred_out is not None:
        write_predictions(pred_out, result.predictions)
        files["predictions"] = str(pred_out)
        files["ground_truth"] = str(annotations)
        if len(result.ground_truth) != len(queries):  # skipped or limited: the scored subset
            gt_out = pred_out.with_name(pred_out.stem + ".gt.jsonl")
            write_qvhighlights(gt_out, result.ground_truth)
            files["ground_truth"] = str(gt_out)
    emit(as_json, {**result.to_dict(), "files": files}, lambda: _render_corpus(result, files))
