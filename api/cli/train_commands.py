"""`vtr train ...`: train models from annotation files and precomputed features.

`vtr train localizer` trains MESM with the official recipe (see localize/mesm/train.py)
on QVHighlights-style jsonl or Charades-STA txt annotations:

    vtr train localizer --train highlight_train_release.jsonl \\
        --val highlight_val_release.jsonl \\
        --features features/clip_features --features features/slowfast_features \\
        --text-features features/clip_text_features \\
        --config-preset qvhighlights --epochs 200 --out mesm_qvh.ckpt

Video features: one or more directories of `{vid}.npz` (key `features`) or `.h5/.hdf5`
files with one dataset per video; several are L2-normalised and concatenated.
Text features: CLIP token features per query, a directory of `qid{qid}.npz` (key
`last_hidden_state`) or an HDF5 file keyed by qid.
"""

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from api.cli.output import count_bars, emit, print_table, stdout
from api.cli.state import state_of
from engine.errors import InputError
from localize.mesm.config import PRESETS

if TYPE_CHECKING:
    from localize.features import InMemoryFeatureSource
    from localize.mesm.data import EncoderTextSource, QidTextSource, TextFeatureSource

log = logging.getLogger(__name__)

train_app = typer.Typer(help="Train models (the MESM localizer).", no_args_is_help=True)


@train_app.callback()
def train_group() -> None:
    """Train models from annotation files and precomputed features."""


def _text_source(path: Path) -> "QidTextSource":
    from localize.features import Hdf5FeatureSource, NpzDirFeatureSource
    from localize.mesm.data import QidTextSource

    if path.is_dir():
        return QidTextSource(
            NpzDirFeatureSource(path, key="last_hidden_state", filename="qid{}.npz")
        )
    if path.suffix.lower() in (".h5", ".hdf5"):
        return QidTextSource(Hdf5FeatureSource(path))
    raise InputError(
        f"--text-features {path}: give a directory of qid{{qid}}.npz files or an .h5/.hdf5 file"
    )


def _encoded_text_source(
    name: str, texts: list[str], max_words_l: int, device: str
) -> "EncoderTextSource":
    """Token features of every distinct text, computed once in batches by the encoder."""
    from engine.encoders import create_encoder
    from localize.mesm.data import EncoderTextSource

    encoder = create_encoder(name, device)
    distinct = sorted(set(texts))
    feats = encoder.encode_text(distinct, max_tokens=max_words_l)
    table = {t: feats.tokens[i][feats.mask[i]] for i, t in enumerate(distinct)}
    return EncoderTextSource(table.__getitem__)


def _collection_source(ctx: typer.Context, collection: str) -> "InMemoryFeatureSource":
    """Every ready video's stored clip features, keyed by its file stem."""
    from index.collection_index import ready_video_features
    from localize.features import InMemoryFeatureSource

    state = state_of(ctx)
    record = state.catalog.get_collection(collection)
    rows = ready_video_features(state.catalog, state.settings.storage.data_dir, record)
    table = {Path(video.uri).stem: clips for video, clips in rows}
    if not table:
        raise InputError(f"collection {collection!r} has no indexed videos")
    return InMemoryFeatureSource(table)


@train_app.command("localizer")
def train_localizer_command(
    ctx: typer.Context,
    train: Annotated[Path, typer.Option(help="Training annotations (.jsonl or Charades .txt).")],
    out: Annotated[Path, typer.Option(help="Checkpoint to write (the best epoch's weights).")],
    features: Annotated[
        list[Path] | None,
        typer.Option(help="Video features: npz directory or HDF5 file; repeat to concatenate."),
    ] = None,
    collection: Annotated[
        str | None,
        typer.Option(help="Or the clip features of this vtr collection (vid = video file stem)."),
    ] = None,
    text_features: Annotated[
        Path | None,
        typer.Option(help="Token features per query: qid{qid}.npz directory or HDF5."),
    ] = None,
    text_encoder: Annotated[
        str | None,
        typer.Option(help="Or compute token features with this encoder (e.g. clip-vit-b32)."),
    ] = None,
    val: Annotated[
        Path | None, typer.Option(help="Validation annotations; best MR-full-mAP is kept.")
    ] = None,
    config_preset: Annotated[
        str, typer.Option(help=f"MESM preset: {', '.join(sorted(PRESETS))}.")
    ] = "qvhighlights",
    hidden_dim: Annotated[
        int | None,
        typer.Option(
            min=8, help="Transformer width (default: the preset's 256); feed-forward 4x it."
        ),
    ] = None,
    annotation_format: Annotated[
        str, typer.Option("--format", help="auto (by suffix), qvhighlights or charades.")
    ] = "auto",
    durations: Annotated[
        Path | None,
        typer.Option(help="Charades durations: Charades_v1_*.csv or JSON {vid: seconds}."),
    ] = None,
    vocab_file: Annotated[
        Path | None,
        typer.Option(help="Official CLIP_tokenized_count.txt; default: counted on --train."),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 200,
    batch_videos: Annotated[
        int | None, typer.Option(min=1, help="Videos per batch (default 12).")
    ] = None,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 2e-4,
    lr_drop: Annotated[
        int,
        typer.Option(min=1, help="Halve the learning rate every this many epochs (official: 400)."),
    ] = 400,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 2018,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train the MESM localizer; keeps the checkpoint with the best val MR-full-mAP."""
    # torch and the training stack load only when this command runs
    from localize.features import open_feature_source
    from localize.mesm.config import TEF_DIMS, preset
    from localize.mesm.data import (
        MesmDataset,
        WordVocab,
        clip_tokenizer,
        data_config,
        dataset_style,
    )
    from localize.mesm.losses import criterion_preset
    from localize.mesm.train import (
        SELECTION_METRIC,
        AnnotationFormat,
        Device,
        TrainConfig,
        load_durations,
        load_queries,
        train_localizer,
    )

    if annotation_format not in ("auto", "qvhighlights", "charades"):
        raise InputError(
            f"--format must be auto, qvhighlights or charades, not {annotation_format!r}"
        )
    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"--device must be auto, cpu or cuda, not {device!r}")
    fmt = cast(AnnotationFormat, annotation_format)
    chosen_device = cast(Device, device)
    model_config = preset(config_preset)
    if hidden_dim is not None:
        model_config = replace(model_config, hidden_dim=hidden_dim, dim_feedforward=4 * hidden_dim)
    duration_map = load_durations(durations) if durations is not None else None
    train_queries = load_queries(train, fmt, duration_map)
    val_queries = load_queries(val, fmt, duration_map) if val is not None else None

    overrides: dict[str, Any] = {"videos_per_batch": batch_videos} if batch_videos else {}
    dcfg = data_config(model_config, **overrides)
    if (collection is None) == (not features):
        raise InputError("give exactly one of --features and --collection")
    video_source = (
        _collection_source(ctx, collection) if collection else open_feature_source(features or [])
    )
    text_source: TextFeatureSource
    if text_features is not None and text_encoder is None:
        text_source = _text_source(text_features)
    elif text_encoder is not None and text_features is None:
        texts = [q.query for q in train_queries + (val_queries or [])]
        text_source = _encoded_text_source(text_encoder, texts, dcfg.max_words_l, device)
    else:
        raise InputError("give exactly one of --text-features and --text-encoder")
    if vocab_file is not None:
        vocab = WordVocab.from_count_file(vocab_file, model_config.vocab_size)
    else:
        vocab = WordVocab.from_texts(
            [q.query for q in train_queries],
            clip_tokenizer(),
            model_config.vocab_size,
            dcfg.max_words_l,
        )
    train_set = MesmDataset(train_queries, video_source, text_source, dcfg, vocab=vocab, seed=seed)
    val_set = (
        MesmDataset(val_queries, video_source, text_source, dcfg, seed=seed)
        if val_queries is not None
        else None
    )
    if not model_config.v_feat_splits:  # a CLIP-only preset takes the given features' widths
        first = train_queries[0]
        video_dim = video_source.get(first.vid).shape[1]
        model_config = replace(
            model_config,
            v_feat_dim=video_dim + TEF_DIMS,
            t_feat_dim=text_source.get(first).shape[1],
            name=f"{model_config.name.split('-clip')[0]}-clip{video_dim}",
        )
    criterion = criterion_preset(dataset_style(model_config))
    config = TrainConfig(epochs=epochs, lr=lr, lr_drop=lr_drop, seed=seed, device=chosen_device)

    with count_bars(transient=True) as progress:
        result = train_localizer(
            model_config, train_set, val_set, out, config, criterion, progress=progress
        )

    summary = result.to_dict()
    summary["preset"] = config_preset
    summary["train_queries"] = len(train_set.queries)
    summary["val_queries"] = len(val_set.queries) if val_set is not None else 0

    def render() -> None:
        rows = [
            (
                r.epoch,
                f"{r.train_losses.get('loss_overall', float('nan')):.4f}",
                "" if r.val_brief is None else r.val_brief.get(SELECTION_METRIC),
                f"{r.seconds:.1f}",
            )
            for r in result.history
        ]
        print_table("epochs", ["epoch", "train loss", SELECTION_METRIC, "seconds"], rows)
        best = "" if result.best_score is None else f" ({SELECTION_METRIC} {result.best_score:.2f})"
        stdout.print(f"saved epoch {result.best_epoch}{best} to {result.checkpoint}")

    emit(as_json, summary, render)


# --- vtr train encoder ------------------------------------------------------------------


@train_app.command("encoder")
def train_encoder_command(
    ctx: typer.Context,
    data: Annotated[
        list[Path],
        typer.Option(help="A `vtr synth` corpus (world.json + videos/); repeat for several."),
    ],
    out: Annotated[Path, typer.Option(help="Checkpoint to write (encoder + level heads).")],
    epochs: Annotated[
        int,
        typer.Option(
            min=0, help="End-to-end passes over every event (0 with --init: level heads only)."
        ),
    ] = 8,
    head_epochs: Annotated[
        int, typer.Option(min=0, help="Level-head passes over every video (image tower frozen).")
    ] = 10,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    image_size: Annotated[
        int | None,
        typer.Option(min=32, help="Image tower input size (px); default: vtr-synth-s's (96)."),
    ] = None,
    motion_gap: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.9,
            help="Seconds between the two frames a motion image tower sees per clip "
            "(0: one frame; default: --init's, else 0). With --init of a one-frame model, "
            "the tower gains the motion input, starting at zero.",
        ),
    ] = None,
    eval_data: Annotated[
        Path | None,
        typer.Option(help="A held-out `vtr synth` corpus: retrieval metrics go in the checkpoint."),
    ] = None,
    init: Annotated[
        Path | None,
        typer.Option(help="Continue from this `vtr train encoder` checkpoint (its architecture)."),
    ] = None,
    geometry_weight: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Weight of the pose loss: each object's place, size and turn read back "
            "from its clip embedding, so the action head can see motion (0: off).",
        ),
    ] = 1.0,
    counterfactual_weight: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Weight of the counterfactual loss: an event's windows must fit its "
            "sentence better than sentences about the same object doing something else, "
            "and better than themselves played backwards (0: off).",
        ),
    ] = 1.0,
    counterfactual_entities: Annotated[
        int,
        typer.Option(
            min=0,
            max=4,
            help="Of the 4 counterfactual sentences per sentence, how many give the event's "
            "action to another object of the video (the rest give the object another action).",
        ),
    ] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train vtr's small CLIP-style encoder and its level heads on a generated corpus."""
    from rich.progress import TaskID

    from engine.encoder_checkpoint import read_checkpoint
    from engine.train_encoder.data import TrainingCorpus
    from engine.train_encoder.evaluate import evaluate_corpus
    from engine.train_encoder.model import EncoderConfig, load_trained_encoder, record_metrics
    from engine.train_encoder.train import (
        TrainConfig,
        image_transform,
        train_encoder,
    )
    from index.level_heads import as_level_fn, span_layout, trained_levels_from
    from index.levels import LevelParams, pooling_levels

    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"--device must be auto, cpu or cuda, not {device!r}")
    levels = state_of(ctx).settings.levels
    params = LevelParams(
        clip_seconds=2.0,  # the synth world's clip unit
        action_window_clips=levels.action_window_clips,
        action_stride_clips=levels.action_stride_clips,
        entity_threshold=levels.entity_threshold,
    )
    start = None
    extra: dict[str, Any] = {"data": [d.name for d in data]}
    shape: dict[str, Any] = {}  # what --init fixes beside the encoder
    if init is not None:
        start = read_checkpoint(init)
        extra["init"] = {  # the run continued from, and that run's own history
            "checkpoint": init.name,
            "train_args": start["train_args"],
            "history": start.get("metrics", {}).get("training", {}).get("history", []),
        }
        encoder_config = EncoderConfig.from_dict(start["encoder_config"])
        hidden = start.get("level_heads", {}).get("config", {}).get("hidden")
        if hidden is not None:  # else initial_model says what is missing
            shape["head_hidden"] = int(hidden)
        if image_size not in (None, encoder_config.image_size):
            raise InputError(f"--init {init} takes {encoder_config.image_size} px images")
        if motion_gap is not None and encoder_config.motion_gap_s not in (0.0, motion_gap):
            raise InputError(
                f"--init {init} sees frames {encoder_config.motion_gap_s} s apart, "
                f"not {motion_gap} s"
            )
    else:
        encoder_config = EncoderConfig()
        if image_size is not None:
            encoder_config = replace(encoder_config, image_size=image_size)
    if motion_gap is not None:
        encoder_config = replace(encoder_config, motion_gap_s=motion_gap)
    config = TrainConfig(
        epochs=epochs,
        head_epochs=head_epochs,
        seed=seed,
        device=device,
        encoder=encoder_config,
        geometry_weight=geometry_weight,
        counterfactual_weight=counterfactual_weight,
        counterfactual_entities=counterfactual_entities,
        **shape,
    )
    tasks: dict[str, TaskID] = {}
    with count_bars(transient=True) as progress:

        def advance(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        corpus = TrainingCorpus.load(
            data,
            image_transform(config.encoder),
            progress=lambda done, total: advance("decode", done, total),
        )
        result = train_encoder(
            corpus,
            out,
            config,
            span_layout(params),
            progress=advance,
            extra=extra,
            init=start,
        )
    summary = result.to_dict()
    if eval_data is not None:
        encoder = load_trained_encoder(out, device)
        strategies = {
            "pooling": as_level_fn(pooling_levels, params),
            "trained": as_level_fn(trained_levels_from(out), params),
        }
        summary["eval"] = evaluate_corpus(encoder, eval_data, strategies)
        record_metrics(out, "eval", summary["eval"])

    def render() -> None:
        rows = [
            (h["stage"], h["epoch"], f"{h['loss']:.4f}", f"{h['seconds']:.1f}")
            for h in result.history
        ]
        print_table("epochs", ["stage", "epoch", "loss", "seconds"], rows)
        if "eval" in summary:
            eval_rows = [
                (strategy, phrasing, m["t2v_r1"], m["t2v_r5"], m["t2v_r10"], m["moment_r1_iou50"])
                for strategy, by_phrasing in summary["eval"].items()
                if isinstance(by_phrasing, dict)
                for phrasing, m in by_phrasing.items()
            ]
            print_table(
                f"held-out corpus {eval_data}",
                ["levels", "phrasing", "R@1", "R@5", "R@10", "moment R@1 IoU.5"],
                eval_rows,
            )
        stdout.print(f"saved {result.checkpoint} after {result.seconds['total']:.0f} s")

    emit(as_json, summary, render)
