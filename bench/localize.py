"""MESM localizer latency: one query against 1, 20, 100 candidate videos of 75 clips.

`MesmLocalizer.localize` is timed end to end (input preparation, model, post-processing)
on the QVHighlights configuration (2818-d video rows, 512-d text, random weights, text
features given), in fp32 and in the opt-in reduced precision (bf16 on CPU, fp16 on
CUDA), with the per-video cache warm (the same candidates queried again: only the
query-dependent work runs) and cold (cache cleared before each call). GFLOP are counted
with torch.utils.flop_counter on the model's forward (matmuls and attention); GFLOP/s =
GFLOP / median latency. `rank` compares the reduced-precision moment order with fp32:
the share of videos whose best moment is the same, and of moment pairs ordered alike.

With `--official DIR` (or $MESM_OFFICIAL_DIR) pointing at a checkout of the official code
(github lntzm/MESM; never part of this repository), its eval forward runs on the same
weights and inputs (each video its own group, batch = the candidates) and the table gets
its latency and official / ours ratios; the largest output difference is printed as a
check. Its forward always runs a negative pass; with one video, the video is made its
own negative (the official sampler needs a second video). The official package imports
pandas in an unused helper; when pandas is missing an empty stand-in module is used.

Figures depend on the machine and on what else runs on it: the load average is printed
before and after.

Run:  .venv/bin/python bench/localize.py
      .venv/bin/python bench/localize.py --videos 1 20 --repeats 5 --threads 1
      MESM_OFFICIAL_DIR=/path/to/MESM .venv/bin/python bench/localize.py
"""

import argparse
import functools
import importlib
import importlib.util
import os
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localize.mesm.config import MesmConfig, preset
from localize.mesm.inference import MesmLocalizer, prepare_clips, prepare_text
from localize.mesm.model import MesmModel, build_model
from localize.types import QueryText, VideoClips

CLIPS = 75
TOKENS = 20  # SOT + 18 words + EOT


def _inputs(config: MesmConfig, videos: int, seed: int) -> tuple[QueryText, list[VideoClips]]:
    rng = np.random.default_rng(seed)
    tokens = rng.standard_normal((TOKENS, config.t_feat_dim)).astype(np.float32)
    query = QueryText("bench query", tokens.mean(0), tokens)
    clips = [
        VideoClips(
            i,
            rng.standard_normal((CLIPS, config.clip_feat_dim)).astype(np.float32),
            config.clip_seconds,
            CLIPS * config.clip_seconds,
        )
        for i in range(videos)
    ]
    return query, clips


def _time(call: Callable[[], object], repeats: int, before: Callable[[], None]) -> list[float]:
    before()
    call()  # warm-up (oneDNN packing, allocator)
    samples = []
    for _ in range(repeats):
        before()
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def _flops(model: MesmModel, query: QueryText, videos: list[VideoClips], cold: bool) -> float:
    """GFLOP of one localize call (plain F.linear path so the counter sees every GEMM)."""
    device = model.global_rep_token.device
    words, _ = prepare_text(query.tokens, model.config.max_q_l)
    rows = np.stack([prepare_clips(v.clips, model.config) for v in videos])
    video = torch.from_numpy(rows).to(device)
    mask = torch.ones(video.shape[:2], dtype=torch.bool, device=device)
    with torch.enable_grad():
        state = model.encode_videos(video, mask)
        counter = FlopCounterMode(display=False)
        with counter:
            if cold:
                state = model.encode_videos(video, mask)
            model.localize(model.encode_text(torch.from_numpy(words)[None].to(device)), state)
    return counter.get_total_flops() / 1e9


def _slot_scores(
    model: MesmModel, device: str, precision: str, query: QueryText, videos: list[VideoClips]
) -> np.ndarray:
    """(videos, queries) foreground scores in decoder-query order."""
    words, _ = prepare_text(query.tokens, model.config.max_q_l)
    rows = torch.from_numpy(np.stack([prepare_clips(v.clips, model.config) for v in videos]))
    mask = torch.ones(rows.shape[:2], dtype=torch.bool)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    with torch.inference_mode(), torch.autocast(device, dtype=dtype, enabled=dtype is not None):
        text = model.encode_text(torch.from_numpy(words)[None].to(device))
        state = model.encode_videos(rows.to(device), mask.to(device))
        logits = model.localize(text, state)["pred_logits"].float().cpu()
    return logits.softmax(-1)[..., 0].numpy()


def _rank_agreement(
    model: MesmModel, device: str, reduced: str, query: QueryText, videos: list[VideoClips]
) -> str:
    ref = _slot_scores(model, device, "fp32", query, videos)
    low = _slot_scores(model, device, reduced, query, videos)
    top1 = float(np.mean(ref.argmax(1) == low.argmax(1)))
    d_ref = ref[:, :, None] - ref[:, None, :]  # (N, Q, Q)
    d_low = low[:, :, None] - low[:, None, :]
    pairs = np.triu(np.ones(ref.shape[1], dtype=bool), 1)[None] & (d_ref != 0)
    agree = float(np.mean((d_ref * d_low > 0)[pairs]))
    return (
        f"best moment same in {top1:.0%} of videos, {agree:.1%} of moment pairs in the same "
        f"order, max score error {np.abs(ref - low).max():.1e}"
    )


def _official_model(directory: Path, model: MesmModel) -> tuple[torch.nn.Module, types.ModuleType]:
    """The official MESM built from `directory` with `model`'s weights (strict load)."""
    sys.path.insert(0, str(directory))
    stand_in = importlib.util.find_spec("pandas") is None
    if stand_in:  # only an unused official helper imports it
        sys.modules["pandas"] = types.ModuleType("pandas")
    try:
        off = importlib.import_module("model")
        off_model_module = importlib.import_module("model.model")
    finally:
        if stand_in:
            del sys.modules["pandas"]
    c = model.config

    def t2v(layers: int) -> torch.nn.Module:
        return off.T2VEncoder(
            d_model=c.hidden_dim,
            dropout=c.dropout,
            nhead=c.nheads,
            dim_feedforward=c.dim_feedforward,
            num_encoder_layers=layers,
            normalize_before=False,
            activation="prelu",
        )

    official = off.MESM(
        text_encoder=None,
        enhance_encoder=t2v(c.enhance_layers),
        t2v_encoder=t2v(c.t2v_layers),
        transformer=off.Transformer(
            d_model=c.hidden_dim,
            dropout=c.dropout,
            nhead=c.nheads,
            dim_feedforward=c.dim_feedforward,
            num_encoder_layers=c.enc_layers,
            num_decoder_layers=c.dec_layers,
            normalize_before=False,
            return_intermediate_dec=True,
            activation="prelu",
        ),
        vid_position_embed=off.PositionEmbeddingSine(c.hidden_dim, normalize=True),
        txt_position_embed=off.TrainablePositionalEncoding(
            max_position_embeddings=c.max_q_l + 1, hidden_size=c.hidden_dim, dropout=0.5
        ),
        txt_dim=c.t_feat_dim,
        vid_dim=c.v_feat_dim,
        num_queries=c.num_queries,
        input_dropout=c.input_dropout,
        aux_loss=True,
        max_video_l=c.max_v_l,
        max_words_l=c.max_q_l,
        normalize_txt=True,
        use_txt_pos=False,
        span_loss_type="l1",
        n_input_proj=2,
        rec_fw=True,
        vocab_size=c.vocab_size + 2,  # without a text encoder its word head has vocab + 1
        rec_ss=True,
        num_recss_layers=c.recon_layers,
    )
    official.load_state_dict(model.state_dict(), strict=True)
    return official.eval(), off_model_module


def _official_runner(
    official: torch.nn.Module,
    module: types.ModuleType,
    model: MesmModel,
    query: QueryText,
    videos: list[VideoClips],
    device: str,
) -> tuple[Callable[[], object], float]:
    """A no-arg call of the official eval forward, and its max |pred_spans| difference."""
    n = len(videos)
    official.to(device)
    model.to(device)
    words, _ = prepare_text(query.tokens, model.config.max_q_l)
    rows = np.stack([prepare_clips(v.clips, model.config) for v in videos])
    video = torch.from_numpy(rows).to(device)
    mask = torch.ones(video.shape[:2], dtype=torch.bool, device=device)
    text = torch.from_numpy(words)[None].expand(n, -1, -1).contiguous().to(device)
    groups = torch.ones(n, dtype=torch.long, device=device)
    sampler = module.__dict__.setdefault("_vtr_original_sampler", module.sample_outclass_neg)

    def negatives(num_clips: torch.Tensor) -> torch.Tensor:
        if len(num_clips) > 1:
            return sampler(num_clips)
        return torch.zeros(int(num_clips.sum()), dtype=torch.long, device=num_clips.device)

    module.__dict__["sample_outclass_neg"] = negatives

    def run() -> dict:
        with torch.no_grad():
            return official(
                video_feat=video,
                video_mask=mask,
                words_id=text,
                words_mask=None,
                words_weight=torch.ones(text.shape[:2], device=device),
                num_clips=groups,
                dataset_name="qvhighlights",
                is_training=False,
            )

    with torch.inference_mode():
        mine = model.localize(model.encode_text(text[:1]), model.encode_videos(video, mask))[
            "pred_spans"
        ]
    diff = float((run()["pred_spans"] - mine).abs().max())
    return run, diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, nargs="+", default=[1, 20, 100])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    parser.add_argument("--official", type=Path, default=os.environ.get("MESM_OFFICIAL_DIR"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = preset("qvhighlights")
    model = build_model(config, seed=0)
    official = None
    if args.official:
        official = _official_model(Path(args.official), model)
    devices = [d for d in args.devices if d == "cpu" or torch.cuda.is_available()]
    print(
        f"MESM {config.name}: {config.v_feat_dim}-d video, {CLIPS} clips, {TOKENS} tokens; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, load {os.getloadavg()[0]:.2f}"
    )
    header = (
        f"{'device':6} {'precision':9} {'videos':>6} {'cache':5} {'median ms':>10} "
        f"{'min ms':>8} {'GFLOP':>7} {'GFLOP/s':>8}"
    )
    if official is not None:
        header += f" {'official ms':>11} {'official/ours':>13}"
    print(header)
    for device in devices:
        for n in args.videos:
            query, videos = _inputs(config, n, seed=n)
            official_ms = None
            if official is not None:
                run, diff = _official_runner(*official, model, query, videos, device)
                official_ms = statistics.median(_time(run, args.repeats, lambda: None))
                print(f"  (official vs ours, {n} videos: max |pred_spans| diff {diff:.2e})")
            for precision in ("fp32", "bf16" if device == "cpu" else "fp16"):
                loc = MesmLocalizer(model, device=device, precision=precision)
                for cache in ("warm", "cold"):
                    before = loc.clear_cache if cache == "cold" else (lambda: None)
                    call = functools.partial(loc.localize, query, videos, 10)
                    samples = _time(call, args.repeats, before)
                    median = statistics.median(samples)
                    gflop = _flops(model, query, videos, cold=cache == "cold")
                    line = (
                        f"{device:6} {precision:9} {n:6d} {cache:5} {median:10.1f} "
                        f"{min(samples):8.1f} {gflop:7.2f} {gflop / median * 1e3:8.1f}"
                    )
                    if official_ms is not None:
                        line += f" {official_ms:11.1f} {official_ms / median:13.2f}"
                    print(line)
            if n > 1:
                reduced = "bf16" if device == "cpu" else "fp16"
                print(
                    f"  ({reduced} vs fp32 ranking, {n} videos: "
                    f"{_rank_agreement(model, device, reduced, query, videos)})"
                )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
