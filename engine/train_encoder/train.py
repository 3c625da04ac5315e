"""Training the synth encoder and its level heads, in two stages (CPU in minutes).

Stage 1, end to end (image tower, text tower, action head, concept classifiers): batches
of B events, each seen through a window of L clips around it (inside it when longer) and
described by a fresh default-phrasing sentence. Losses (multi-level alignment for
video-text retrieval, plus MCSAN-style concept losses):
- clip frame <-> sentence: symmetric multi-positive InfoNCE, CLIP's learnable temperature;
- action window <-> sentence: the action head over the window's clip embeddings;
- entity concepts (focal BCE) on every clip embedding, action concepts on every window,
  and the same classifiers on the sentence embeddings (the concepts its words settle);
- pose (masked MSE): each colour's object's place, size and turn read linearly from the
  clip embedding. Ingest samples one frame per 2 s clip and the action head sees only
  the clip embeddings, so motion is visible to it only if they keep where things are;
- counterfactuals (both stages): a window inside an event must fit its sentence better
  than it fits sentences that change the action (the reversed one first: left for
  right) or give the action to another object of the video, and better than the window
  played backwards fits the sentence where that shows another action (appear and
  disappear, grow and shrink, the moves, a named colour change). In-batch negatives
  rarely hold the same object doing something else, so without these the action head
  can match the object and ignore what it does.
From scratch, contrast between uninformative embeddings collapses one tower onto a
constant (the frames differ only in small objects), so the first `contrastive_start` of
stage 1 trains on the concept losses alone (classifier biases start at the base rates),
then the contrastive terms ramp in with a uniformity term that keeps each tower spread.
Stage 2, the image tower frozen at its float16-rounded export (so the heads learn on
exactly the clip features ingest stores): every clip is embedded once, the index's
layout (action windows, entity states) is computed on those features, and the level
heads train jointly with the text tower on batches of whole videos:
- video <-> sentence (global head), symmetric multi-positive InfoNCE;
- sentence -> action windows of the batch, soft targets = IoU^2 with the fitted event;
- sentence -> entity states overlapping the fitted event; sentence -> raw clips (keeps
  plain clip similarity, used by `pooling` and the similarity localizer, aligned);
- action concepts on the windows; counterfactuals on the windows that fit a sentence.
AdamW, linear warm-up then cosine decay, seeded. The checkpoint is self-describing and
written atomically (`engine.encoder_checkpoint.save_checkpoint`).

    corpus = TrainingCorpus.load(Path("synth"), image_transform(EncoderConfig()))
    result = train_encoder(corpus, Path("enc.pt"), TrainConfig(epochs=8), layout)
"""

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from engine.encoder_checkpoint import CHECKPOINT_FORMAT, CLIP_VOCAB_SIZE, save_checkpoint
from engine.encoders import (
    OPENAI_MEAN,
    OPENAI_STD,
    ImageTransform,
    clip_token_ids,
    image_channels,
    widen_stem,
)
from engine.errors import InputError
from engine.train_encoder.data import (
    ACTION_CONCEPTS,
    CLIP_SECONDS,
    ENTITY_CONCEPTS,
    GEOMETRY_TARGETS,
    EventBatch,
    TrainingCorpus,
    VideoBatch,
    summary,
    training_texts,
)
from engine.train_encoder.losses import (
    focal_bce,
    masked_mse,
    multi_positive_nce,
    soft_target_ce,
    symmetric_nce,
    uniformity,
)
from engine.train_encoder.model import (
    EncoderConfig,
    HeadConfig,
    SynthClip,
    TokenVocab,
    gather_ranges,
    model_from_checkpoint,
    reverse_in_time,
)

log = logging.getLogger(__name__)

StepFn = Callable[[str, int, int], None]  # (stage, steps done, steps in the stage)
Spans = dict[str, list[tuple[int, int]]]  # level -> [start, end) clip ranges


@dataclass(frozen=True)
class SpanLayout:
    """How the index cuts a video into action windows and entity states (its clip
    ranges from the clip features), and the parameters that say so (recorded)."""

    spans: Callable[[np.ndarray], Spans]  # (T, D) clip features -> {"action", "entity"}
    params: dict[str, Any]  # must include "action_window_clips"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8  # stage 1: passes over every event of the corpus (0: heads only)
    head_epochs: int = 10  # stage 2: passes over every video
    batch_events: int = 24  # stage 1 batch (x window clips images)
    batch_videos: int = 32  # stage 2 batch
    sentences_per_video: int = 2  # stage 2
    lr: float = 2e-3  # stage 1 peak learning rate
    head_lr: float = 1e-3  # stage 2 peak learning rate
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    token_dropout: float = 0.1  # share of word tokens replaced by UNK (robust to new words)
    concept_weight: float = 1.0
    geometry_weight: float = 1.0  # stage 1: pose regression on clip embeddings (0: off)
    # both stages: each sentence's windows against sentences about the same object doing
    # something else, and against themselves played backwards (0: off)
    counterfactual_weight: float = 1.0
    counterfactuals: int = 4  # such sentences per sentence
    counterfactual_entities: int = 0  # of those, how many name another object of the video
    uniformity_weight: float = 0.5  # stage 1: spread each tower's embeddings
    contrastive_start: float = 0.4  # stage 1: share of steps on the concept losses alone
    contrastive_warmup: float = 0.1  # stage 1: share of steps over which contrast ramps up
    grad_clip: float = 1.0  # max global gradient norm; 0: no clipping
    # stage 2: action spans of these lengths (clips; stride half the length) beside the
    # index's windows, so the action head ranks spans of any length (span localizer)
    head_span_lengths: tuple[int, ...] = (1, 2, 3, 6, 8)
    seed: int = 0
    device: str = "auto"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    head_hidden: int = 128

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.head_epochs < 0:
            raise InputError("epochs and head epochs must be >= 0")
        if self.batch_events < 2 or self.batch_videos < 2:
            raise InputError("batches need at least 2 items (contrastive losses)")
        if not 0.0 <= self.token_dropout < 1.0:
            raise InputError(f"token_dropout must be in [0, 1), got {self.token_dropout}")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = asdict(self)
        return data


@dataclass
class TrainResult:
    checkpoint: Path
    history: list[dict[str, Any]]  # per epoch: stage, epoch, mean losses, seconds
    seconds: dict[str, float]
    corpus: dict[str, Any]
    device: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "device": self.device,
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
            "corpus": self.corpus,
            "history": self.history,
        }


def image_transform(config: EncoderConfig) -> ImageTransform:
    """The preprocessing `create_encoder` gives this model (open_clip's CLIP defaults)."""
    return ImageTransform(
        size=config.image_size, mean=OPENAI_MEAN, std=OPENAI_STD, motion_gap_s=config.motion_gap_s
    )


def resolve_train_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for, but torch sees no CUDA device")
    if device != "cpu" and not device.startswith("cuda"):
        raise InputError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


class TextTokens:
    """CLIP BPE ids for sentences, with random word dropout to the UNK row."""

    def __init__(self, context_length: int) -> None:
        from open_clip.tokenizer import SimpleTokenizer

        self.tokenizer = SimpleTokenizer(context_length=context_length)
        self.context_length = context_length
        self._cache: dict[str, list[int]] = {}

    def bpe(self, text: str) -> list[int]:
        if text not in self._cache:
            self._cache[text] = self.tokenizer.encode(text)
        return self._cache[text]

    def ids(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> ids (B, context) and lengths (B,) (SOT + BPE + EOT)."""
        return clip_token_ids(
            self.tokenizer,
            [self.bpe(t) for t in texts],
            self.context_length - 2,
            self.context_length,
        )

    def vocabulary(self, texts: list[str]) -> TokenVocab:
        return TokenVocab(t for text in texts for t in self.bpe(text))


def encode_text(
    model: SynthClip,
    tokens: TextTokens,
    texts: list[str],
    device: torch.device,
    dropout: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sentences -> (B, D) normalised; `dropout` of the word tokens become UNK."""
    ids, lengths = tokens.ids(texts)  # (B, context), (B,)
    rows = model.vocab.rows(ids)  # (B, context) reduced rows
    if dropout > 0:
        position = torch.arange(ids.shape[1])[None, :]
        words = (position >= 1) & (position < (lengths[:, None] - 1))  # not SOT/EOT/pad
        drop = (torch.rand(ids.shape, generator=generator) < dropout) & words
        rows = rows.masked_fill(drop, TokenVocab.UNK_ROW)
    return F.normalize(model.clip.encode_text(rows.to(device)), dim=-1)


def text_concept_loss(
    model: SynthClip,
    text: torch.Tensor,
    targets: tuple[np.ndarray, ...],
    device: torch.device,
) -> torch.Tensor:
    """Focal BCE of the shared concept classifiers on sentence embeddings (B, D), over
    the concepts the words settle (`Description.concept_targets`)."""
    entity, entity_known, action, action_known = (torch.from_numpy(t).to(device) for t in targets)
    return focal_bce(model.entity_logits(text), entity, entity_known) + focal_bce(
        model.action_logits(text), action, action_known
    )


def stage1_loss(
    model: SynthClip,
    corpus: TrainingCorpus,
    tokens: TextTokens,
    batch: EventBatch,
    device: torch.device,
    concept_weight: float = 0.5,
    dropout: float = 0.0,
    generator: torch.Generator | None = None,
    uniformity_weight: float = 0.0,
    contrastive_weight: float = 1.0,
    geometry_weight: float = 0.0,
    counterfactual_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The stage-1 loss of one event batch and its parts."""
    n, length = batch.valid.shape
    pixels = corpus.pixels(batch.rows).to(device)  # (n * L, 3, S, S)
    images = model.encode_images(pixels)  # (n * L, D)
    text = encode_text(model, tokens, batch.texts, device, dropout, generator)  # (n, D)
    valid = torch.from_numpy(batch.valid).to(device)  # (n, L)
    flat_valid = valid.reshape(-1)
    text_image = torch.from_numpy(batch.text_image).to(device)  # (n, n * L)
    clip_logits = model.clip_scale() * text @ images[flat_valid].T  # (n, valid images)
    loss_clip = symmetric_nce(clip_logits, text_image[:, flat_valid])
    clips = images.view(n, length, -1)  # (n, L, D)
    windows = model.heads.action_vectors(clips, valid)  # (n, D)
    window_logits = model.level_scale("action") * text @ windows.T  # (n, n)
    text_window = torch.from_numpy(batch.text_window).to(device)  # (n, n) bool
    loss_window = symmetric_nce(window_logits, text_window)
    entity_logits = model.entity_logits(images[flat_valid])  # (valid images, E)
    entity_target = torch.from_numpy(batch.entity_labels).to(device)[flat_valid]
    loss_entity = focal_bce(entity_logits, entity_target)
    action_logits = model.action_logits(windows)  # (n, A)
    loss_action = focal_bce(action_logits, torch.from_numpy(batch.action_labels).to(device))
    loss_text = text_concept_loss(model, text, batch.text_concepts, device)
    loss_spread = uniformity(images[flat_valid]) + uniformity(text)
    loss_geometry = masked_mse(
        model.geometry_outputs(images[flat_valid]),
        torch.from_numpy(batch.geometry).to(device)[flat_valid],
        torch.from_numpy(batch.geometry_known).to(device)[flat_valid],
    )
    total = contrastive_weight * (loss_clip + loss_window) + uniformity_weight * loss_spread
    total = total + concept_weight * (loss_entity + loss_action + loss_text)
    total = total + geometry_weight * loss_geometry
    loss_counter = text.new_zeros(())
    if counterfactual_weight > 0:
        loss_counter = counterfactual_term(
            model,
            tokens,
            batch,
            text,
            clips,
            valid,
            windows,
            text_window.float(),
            dropout,
            generator,
        )
        total = total + contrastive_weight * counterfactual_weight * loss_counter
    parts = {
        "loss": float(total.detach()),
        "clip": float(loss_clip.detach()),
        "window": float(loss_window.detach()),
        "entity_concepts": float(loss_entity.detach()),
        "action_concepts": float(loss_action.detach()),
        "text_concepts": float(loss_text.detach()),
        "uniformity": float(loss_spread.detach()),
        "geometry": float(loss_geometry.detach()),
        "counterfactual": float(loss_counter.detach()),
    }
    return total, parts


def stage2_loss(
    model: SynthClip,
    features: torch.Tensor,
    first_rows: list[int],
    n_clips: list[int],
    tokens: TextTokens,
    batch: VideoBatch,
    device: torch.device,
    concept_weight: float = 0.5,
    dropout: float = 0.0,
    generator: torch.Generator | None = None,
    counterfactual_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The stage-2 loss of one video batch. `features` (N, D): every clip of the corpus
    (frozen), video v's rows start at `first_rows[v]`."""
    heads = model.heads
    video_ranges = [(first_rows[v], first_rows[v] + n_clips[v]) for v in batch.videos]
    x, mask = gather_ranges(features, video_ranges)  # (V, Tmax, D), (V, Tmax)
    global_vectors = heads.global_vectors(x, mask)  # (V, D)
    offset = [first_rows[v] for v in batch.videos]
    x_w, m_w = gather_ranges(
        features, [(offset[p] + a, offset[p] + b) for p, a, b in batch.windows]
    )
    window_vectors = heads.action_vectors(x_w, m_w)  # (n_windows, D)
    x_s, m_s = gather_ranges(features, [(offset[p] + a, offset[p] + b) for p, a, b in batch.states])
    state_vectors = heads.entity_vectors(x_s, m_s)  # (n_states, D)
    clips = torch.cat([features[a:b] for a, b in video_ranges])  # (n_clips, D)
    text = encode_text(model, tokens, batch.texts, device, dropout, generator)  # (S, D)

    def target(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(device)

    loss_global = symmetric_nce(
        model.level_scale("global") * text @ global_vectors.T, target(batch.text_video)
    )
    window_fit = target(batch.text_window)  # (S, n_windows) IoU^2
    loss_action = soft_target_ce(model.level_scale("action") * text @ window_vectors.T, window_fit)
    loss_entity = multi_positive_nce(
        model.level_scale("entity") * text @ state_vectors.T, target(batch.text_state)
    )
    loss_clip = multi_positive_nce(model.clip_scale() * text @ clips.T, target(batch.text_clip))
    loss_concepts = focal_bce(
        model.action_logits(window_vectors), target(batch.window_action_labels)
    )
    loss_concepts = loss_concepts + text_concept_loss(model, text, batch.text_concepts, device)
    total = loss_global + loss_action + loss_entity + loss_clip + concept_weight * loss_concepts
    loss_counter = text.new_zeros(())
    if counterfactual_weight > 0:
        loss_counter = counterfactual_term(
            model, tokens, batch, text, x_w, m_w, window_vectors, window_fit, dropout, generator
        )
        total = total + counterfactual_weight * loss_counter
    parts = {
        "loss": float(total.detach()),
        "global": float(loss_global.detach()),
        "action": float(loss_action.detach()),
        "entity": float(loss_entity.detach()),
        "clip": float(loss_clip.detach()),
        "action_concepts": float(loss_concepts.detach()),
        "counterfactual": float(loss_counter.detach()),
    }
    return total, parts


def counterfactual_term(
    model: SynthClip,
    tokens: TextTokens,
    batch: EventBatch | VideoBatch,
    text: torch.Tensor,
    x_w: torch.Tensor,
    m_w: torch.Tensor,
    window_vectors: torch.Tensor,
    fit: torch.Tensor,
    dropout: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """`counterfactual_loss` of a batch: its counterfactual sentences encoded (K per
    sentence), or 0 for a batch drawn without them."""
    if not batch.counterfactuals:
        return text.new_zeros(())
    counter = encode_text(model, tokens, batch.counterfactuals, text.device, dropout, generator)
    counter = counter.view(len(text), -1, counter.shape[-1])  # (S, K, D)
    return counterfactual_loss(model, text, counter, x_w, m_w, window_vectors, fit, batch.reverses)


def counterfactual_loss(
    model: SynthClip,
    text: torch.Tensor,
    counter: torch.Tensor,
    x_w: torch.Tensor,
    m_w: torch.Tensor,
    window_vectors: torch.Tensor,
    fit: torch.Tensor,
    reverses: np.ndarray,
) -> torch.Tensor:
    """Each sentence's well-placed windows (`fit` (S, W): IoU^2 with its event, or 1 for
    a window inside it; >= 0.25 counts) must fit it better than they fit its
    counterfactual sentences (`counter`: (S, K, D)), and better than the same window
    played backwards fits it where that shows another action (`reverses` (S,)):
    cross-entropy over those pairs, weighted by `fit`."""
    device = text.device
    pairs = torch.nonzero(fit >= 0.25)  # (P, 2): sentence, window
    if len(pairs) == 0:
        return text.new_zeros(())
    i, w = pairs[:, 0], pairs[:, 1]
    windows = window_vectors[w]  # (P, D)
    backwards = model.heads.action_vectors(reverse_in_time(x_w[w], m_w[w]), m_w[w])  # (P, D)
    backwards_fit = torch.from_numpy(reverses).to(device)[i]  # (P,)
    columns = [
        (text[i] * windows).sum(-1, keepdim=True),  # the fitting pair first
        torch.einsum("pkd,pd->pk", counter[i], windows),
        (text[i] * backwards).sum(-1, keepdim=True).masked_fill(~backwards_fit[:, None], -1e4),
    ]
    logits = model.level_scale("action") * torch.cat(columns, dim=1)  # (P, 2 + K)
    target = torch.zeros(len(pairs), dtype=torch.long, device=device)
    loss = F.cross_entropy(logits, target, reduction="none")
    weight = fit[i, w]
    return (loss * weight).sum() / weight.sum()


def contrastive_ramp(progress: float, config: TrainConfig) -> float:
    """Weight of the stage-1 contrastive terms at `progress` (0..1) of the stage: 0 while
    the concept losses alone make the towers informative, then a linear ramp to 1. (From
    scratch, contrast on uninformative embeddings collapses one tower onto a constant.)"""
    if progress < config.contrastive_start:
        return 0.0
    return min(1.0, (progress - config.contrastive_start) / max(config.contrastive_warmup, 1e-9))


def _optimizer(
    params: list[tuple[str, torch.nn.Parameter]], lr: float, weight_decay: float
) -> torch.optim.AdamW:
    """AdamW; no decay on biases, norms, embeddings, temperatures (CLIP's recipe)."""
    decay = [p for n, p in params if p.ndim >= 2 and "embedding" not in n]
    other = [p for n, p in params if not (p.ndim >= 2 and "embedding" not in n)]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )


def _schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float
) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = max(1, round(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _batches(n: int, size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """A shuffled pass over range(n) in batches of `size` (the last one topped up)."""
    order = rng.permutation(n)
    for start in range(0, n, size):
        chunk = order[start : start + size]
        if len(chunk) < size and n >= size:
            extra = rng.choice(order[:start], size - len(chunk), replace=False)
            chunk = np.concatenate([chunk, extra])
        if len(chunk) >= 2:
            yield chunk


def embed_corpus(
    model: SynthClip, corpus: TrainingCorpus, device: torch.device, batch: int = 256
) -> torch.Tensor:
    """Every clip of the corpus -> (N, D) normalised, rounded through float16 as stored."""
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, corpus.n_clips, batch):
            rows = np.arange(start, min(start + batch, corpus.n_clips))
            out.append(model.encode_images(corpus.pixels(rows).to(device)))
    features = torch.cat(out).half().float()  # (N, D)
    return features.clone()  # a normal tensor (not an inference tensor) for autograd


def _mean_parts(parts: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(float(np.mean([p[k] for p in parts])), 4) for k in parts[0]}


def with_spans(
    layout: dict[str, list[tuple[int, int]]], n_clips: int, lengths: Sequence[int]
) -> dict[str, list[tuple[int, int]]]:
    """A video's layout with extra action spans of each length (stride half the length)."""
    spans = set(layout["action"])
    for length in lengths:
        step = max(1, length // 2)
        spans.update((s, s + length) for s in range(0, n_clips - length + 1, step))
    return layout | {"action": sorted(spans)}


def train_encoder(
    corpus: TrainingCorpus,
    out: Path,
    config: TrainConfig,
    layout: SpanLayout,
    progress: StepFn | None = None,
    extra: dict[str, Any] | None = None,
    init: dict[str, Any] | None = None,
) -> TrainResult:
    """Train on `corpus` and write the checkpoint to `out` (see the module docstring).

    `extra` is stored in the checkpoint's training arguments (e.g. the data directory).
    `init`, a checkpoint of this trainer, continues training from its weights (a warm
    restart of both schedules): its towers are informative already, so stage 1 contrasts
    from the first step, and `epochs=0` retrains the level heads alone.
    """
    started = time.perf_counter()
    device = resolve_train_device(config.device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    window = int(layout.params.get("action_window_clips", 4))
    counterfactuals = config.counterfactuals if config.counterfactual_weight > 0 else 0
    if config.encoder.image_size != corpus.transform.size:
        raise InputError(
            f"the corpus was cached at {corpus.transform.size} px, "
            f"the model takes {config.encoder.image_size} px"
        )
    tokens = TextTokens(config.encoder.context_length)
    if init is None:
        if config.epochs == 0:
            raise InputError("epochs=0 (level heads only) needs a checkpoint to start from")
        vocab = tokens.vocabulary(training_texts() + [q.text for q in corpus.queries])
        model = SynthClip(
            config.encoder,
            vocab,
            len(ENTITY_CONCEPTS),
            len(ACTION_CONCEPTS),
            config.head_hidden,
            len(GEOMETRY_TARGETS),
        )
        entity_rate, action_rate = corpus.concept_rates()
        model.set_concept_priors(torch.from_numpy(entity_rate), torch.from_numpy(action_rate))
    else:
        model = initial_model(init, config)
    model = model.to(device)
    history: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}

    # stage 1: end to end on event windows
    per_epoch = math.ceil(len(corpus.events) / config.batch_events)
    total = config.epochs * per_epoch
    optimizer = _optimizer(list(model.named_parameters()), config.lr, config.weight_decay)
    scheduler = _schedule(optimizer, total, config.warmup_fraction)
    step, t0 = 0, time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        parts, t_epoch = [], time.perf_counter()
        for chunk in _batches(len(corpus.events), config.batch_events, rng):
            batch = corpus.event_batch(
                [corpus.events[int(i)] for i in chunk],
                window,
                rng,
                counterfactuals,
                config.counterfactual_entities,
            )
            contrast = 1.0 if init is not None else contrastive_ramp(step / total, config)
            loss, loss_parts = stage1_loss(
                model,
                corpus,
                tokens,
                batch,
                device,
                config.concept_weight,
                config.token_dropout,
                generator,
                config.uniformity_weight * contrast,
                contrast,
                config.geometry_weight,
                config.counterfactual_weight,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            parts.append(loss_parts)
            step += 1
            if progress is not None:
                progress("encoder", step, total)
        history.append(
            {"stage": "encoder", "epoch": epoch, **_mean_parts(parts)}
            | {"seconds": round(time.perf_counter() - t_epoch, 2)}
        )
        log.info("encoder epoch %d: %s", epoch, history[-1])
    seconds["encoder"] = time.perf_counter() - t0

    # stage 2: the image tower frozen as exported; heads + text tower on whole videos
    t0 = time.perf_counter()
    exported, token_rows = model.export_clip_state()
    model.load_exported_clip_state({"state_dict": exported, "token_table": token_rows})
    model.clip.visual.requires_grad_(False)
    features = embed_corpus(model, corpus, device)  # (N, D)
    first_rows = [vc.first_row for vc in corpus.videos]
    n_clips = [vc.n_clips for vc in corpus.videos]
    layouts = [
        with_spans(layout.spans(features[a : a + n].cpu().numpy()), n, config.head_span_lengths)
        for a, n in zip(first_rows, n_clips, strict=True)
    ]
    seconds["features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    trainable = [
        (n, p)
        for n, p in model.named_parameters()
        if not n.startswith("clip.visual") and not n.startswith("entity_concepts")
    ]
    per_epoch = math.ceil(len(corpus.videos) / config.batch_videos)
    total = config.head_epochs * per_epoch
    optimizer = _optimizer(trainable, config.head_lr, config.weight_decay)
    scheduler = _schedule(optimizer, max(1, total), config.warmup_fraction)
    step = 0
    for epoch in range(1, config.head_epochs + 1):
        model.train()
        parts, t_epoch = [], time.perf_counter()
        for chunk in _batches(len(corpus.videos), config.batch_videos, rng):
            batch2 = corpus.video_batch(
                [int(v) for v in chunk],
                layouts,
                config.sentences_per_video,
                rng,
                counterfactuals,
                config.counterfactual_entities,
            )
            loss, loss_parts = stage2_loss(
                model,
                features,
                first_rows,
                n_clips,
                tokens,
                batch2,
                device,
                config.concept_weight,
                config.token_dropout,
                generator,
                config.counterfactual_weight,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_([p for _, p in trainable], config.grad_clip)
            optimizer.step()
            scheduler.step()
            parts.append(loss_parts)
            step += 1
            if progress is not None:
                progress("heads", step, total)
        if parts:
            history.append(
                {"stage": "heads", "epoch": epoch, **_mean_parts(parts)}
                | {"seconds": round(time.perf_counter() - t_epoch, 2)}
            )
            log.info("heads epoch %d: %s", epoch, history[-1])
    seconds["heads"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - started

    corpus_info = summary(corpus)
    payload = checkpoint_payload(
        model, config, layout, {"history": history, "seconds": seconds}, corpus_info, extra
    )
    save_checkpoint(out, payload)
    log.info("wrote %s after %.1f s", out, seconds["total"])
    return TrainResult(Path(out), history, seconds, corpus_info, str(device))


def initial_model(checkpoint: dict[str, Any], config: TrainConfig) -> SynthClip:
    """The model of a checkpoint to continue from; its architecture must be `config`'s,
    except that a single-frame image tower may gain the motion input (`widen_stem`: the
    new channels start at zero, so the model starts as the checkpoint's)."""
    stored = EncoderConfig.from_dict(checkpoint.get("encoder_config", {}))
    gains_motion = stored.motion_gap_s == 0 and config.encoder.motion_gap_s > 0
    if gains_motion:
        stored = replace(stored, motion_gap_s=config.encoder.motion_gap_s)
    if stored != config.encoder:
        raise InputError(
            f"the starting checkpoint's encoder {asdict(stored)} differs from the one "
            f"asked for {asdict(config.encoder)}"
        )
    hidden = checkpoint.get("level_heads", {}).get("config", {}).get("hidden")
    if hidden != config.head_hidden:
        raise InputError(
            f"the starting checkpoint's heads are {hidden} wide, not {config.head_hidden}"
        )
    model = model_from_checkpoint(checkpoint, len(GEOMETRY_TARGETS))
    if gains_motion:
        widen_stem(model.clip.visual, image_channels(config.encoder.motion_gap_s))
        model.config = config.encoder
    return model


def checkpoint_payload(
    model: SynthClip,
    config: TrainConfig,
    layout: SpanLayout,
    training: dict[str, Any],
    corpus_info: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything a checkpoint holds (see `model` for the format)."""
    transform = image_transform(config.encoder)
    heads_state = {k: v.detach().cpu().float() for k, v in model.heads.state_dict().items()}
    weights, token_rows = model.export_clip_state()
    return {
        "format": CHECKPOINT_FORMAT,
        "model_config": config.encoder.open_clip_config(),
        "encoder_config": asdict(config.encoder),
        "state_dict": weights,
        "token_table": token_rows,
        "level_heads": {
            "config": asdict(HeadConfig(config.encoder.embed_dim, config.head_hidden)),
            "state_dict": heads_state,
        },
        "concept_heads": {
            "entity": {k: v.detach().cpu() for k, v in model.entity_concepts.state_dict().items()},
            "action": {k: v.detach().cpu() for k, v in model.action_concepts.state_dict().items()},
            "geometry": {k: v.detach().cpu() for k, v in model.geometry.state_dict().items()},
        },
        "tokenizer": {
            "kind": "openai-clip-bpe",
            "context_length": config.encoder.context_length,
            "vocab_size": CLIP_VOCAB_SIZE,
            "trained_token_ids": list(model.vocab.token_ids),
            "note": "every id outside trained_token_ids (and SOT, EOT, 0) shares one row",
        },
        "image": {
            "size": transform.size,
            "mean": list(transform.mean),
            "std": list(transform.std),
            "resize_mode": transform.resize_mode,
            "interpolation": transform.interpolation,
            "frames_per_clip": 1,
            "clip_seconds": CLIP_SECONDS,
            "motion_gap_s": transform.motion_gap_s,
        },
        "levels": dict(layout.params),
        "concepts": {"entity": list(ENTITY_CONCEPTS), "action": list(ACTION_CONCEPTS)},
        "train_args": {**config.to_dict(), **(extra or {})},
        "corpus": corpus_info,
        "metrics": {"training": training},
    }
