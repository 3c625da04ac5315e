"""Training data for the synth encoder: cached clip frames, sentences and labels from the plan.

Pixels: every clip of every video of a `vtr synth` corpus is decoded once exactly as
ingest does it (`engine.decode.iter_clips`, one frame per clip at its centre, shortest side
= the model's input size) and preprocessed by `engine.encoders.preprocess_frames`; the
result is stored as uint8 (N, S, S, 3) in `<corpus>/cache/` (.npy, memory-mapped, rebuilt
when the corpus or the transform changes); for a motion image tower each clip keeps its
frame pair, (N, 2, S, S, 3). `ClipCache.pixels(rows)` turns rows back into the float
input ingest would give the model (identical up to float rounding).

Text and truth come from the corpus plan (world.json), not from the annotations alone:
every event of every video (queries and distractors) gets sentences drawn with the
default phrasing (`engine.synth.phrasing`; the held-out phrasing is never used here), and
the plan says which events, clips, windows and videos each sentence fits
(`engine.synth.world.query_matches`). Concept labels: per clip the objects visible in the
model's centre crop (colour, shape, size, and the full triple), per window the actions
that fill it (action, and action x colour of the actor). Geometry per clip: for each
colour, where its object is in the crop, how big, and how it is turned (the pose the
action head must compare across clips to see motion; a colour names one object).

    corpus = TrainingCorpus.load(Path("synth"), transform)
    batch = corpus.event_batch(corpus.events[:24], window=4, rng=np.random.default_rng(0))
"""

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.decode import iter_clips
from engine.encoders import ImageTransform, motion_pixels, preprocess_frames
from engine.errors import DecodeError, InputError, NotFoundError
from engine.synth.phrasing import phrase_query
from engine.synth.render import VIDEOS_DIR, WORLD_NAME, load_world
from engine.synth.world import (
    ACTIONS,
    COLOURS,
    NAMINGS,
    SHAPES,
    SIZE_RADIUS,
    SIZES,
    TARGET_NAMED_P,
    CorpusPlan,
    Entity,
    Event,
    ObjectState,
    SynthQuery,
    Timeline,
    VideoPlan,
    query_matches,
)

log = logging.getLogger(__name__)

CACHE_DIR = "cache"
CACHE_VERSION = 1
CLIP_SECONDS = 2.0  # the synth world's clip unit and ingest's default

ENTITY_CONCEPTS: tuple[str, ...] = (
    *(f"colour={c}" for c in COLOURS),
    *(f"shape={s}" for s in SHAPES),
    *(f"size={z}" for z in SIZES),
    *(f"{z} {c} {s}" for z in SIZES for c in COLOURS for s in SHAPES),
)
ACTION_CONCEPTS: tuple[str, ...] = (
    *ACTIONS,
    *(f"{a} {c}" for a in ACTIONS for c in COLOURS),
)
# Per colour: centre x and y (crop fractions), radius, and the turn as sin/cos of
# order x angle (the order of the shape's rotational symmetry; round shapes have none).
GEOMETRY_PARTS: tuple[str, ...] = ("x", "y", "radius", "turn_sin", "turn_cos")
GEOMETRY_TARGETS: tuple[str, ...] = tuple(f"{c} {g}" for c in COLOURS for g in GEOMETRY_PARTS)
ROTATION_ORDER: dict[str, int] = {"square": 4, "triangle": 3, "star": 5}
_RADIUS_MID = 0.5 * (SIZE_RADIUS["small"] + SIZE_RADIUS["large"])
_RADIUS_HALF_RANGE = 0.5 * (SIZE_RADIUS["large"] - SIZE_RADIUS["small"])
_ENTITY_INDEX = {name: i for i, name in enumerate(ENTITY_CONCEPTS)}
_ACTION_INDEX = {name: i for i, name in enumerate(ACTION_CONCEPTS)}
_COLOUR_SLOT = {name: i for i, name in enumerate(COLOURS)}

ProgressFn = Callable[[int, int], None]  # (done, total)


# --- pixels ---------------------------------------------------------------------------


@dataclass
class ClipCache:
    """Preprocessed clip frames of a corpus, one per clip, all videos concatenated."""

    frames: np.ndarray  # (N, S, S, 3) uint8, memory-mapped; (N, 2, S, S, 3) for pairs
    offsets: dict[str, tuple[int, int]]  # vid -> [first row, end row)
    times_s: np.ndarray  # (N,) presentation time of each (key) frame
    transform: ImageTransform

    def pixels(self, rows: np.ndarray) -> torch.Tensor:
        """Cache rows -> (n, C, S, S) float32, normalised as the encoder expects."""
        x = torch.from_numpy(np.ascontiguousarray(self.frames[rows])).float() / 255.0
        x = x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2)  # (n or 2n, 3, S, S)
        mean = torch.tensor(self.transform.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.transform.std).view(1, 3, 1, 1)
        x = (x - mean) / std
        return motion_pixels(x) if self.transform.motion_gap_s > 0 else x.contiguous()


def _to_uint8(pixels: torch.Tensor, transform: ImageTransform) -> np.ndarray:
    """Normalised (n, 3, S, S) -> (n, S, S, 3) uint8 (exact when no resize happened)."""
    mean = torch.tensor(transform.mean).view(1, 3, 1, 1)
    std = torch.tensor(transform.std).view(1, 3, 1, 1)
    x = (pixels * std + mean) * 255.0  # (n, 3, S, S) in [0, 255]
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _fingerprint(corpus_dir: Path, plan: CorpusPlan, transform: ImageTransform) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, CLIP_SECONDS, repr(transform)]).encode())
    h.update((corpus_dir / WORLD_NAME).read_bytes())
    for video in plan.videos:
        st = (corpus_dir / VIDEOS_DIR / f"{video.vid}.mp4").stat()
        h.update(f"{video.vid}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def decode_clip_frames(path: Path, transform: ImageTransform) -> tuple[np.ndarray, np.ndarray]:
    """One video -> (n_clips, S, S, 3) uint8 preprocessed frames (n_clips, 2, S, S, 3) with
    a motion transform) and (n_clips,) times."""
    frames, times = [], []
    gap = transform.motion_gap_s
    for clip in iter_clips(
        path, CLIP_SECONDS, frames_per_clip=1, short_side=transform.size, motion_gap_s=gap
    ):
        frames.append(clip.frames)  # (1, h, w, 3), or (2, h, w, 3): the frame and its later one
        times.append(float(clip.times_s[0]))
    if not frames:
        raise DecodeError(f"cannot decode {path}: no clips")
    single = replace(transform, motion_gap_s=0.0)
    pixels = preprocess_frames(np.concatenate(frames), single)  # (n or 2n, 3, S, S)
    out = _to_uint8(pixels, single)
    if gap > 0:
        out = out.reshape(len(frames), 2, *out.shape[1:])
    return out, np.asarray(times)


def load_clip_cache(
    corpus_dir: Path,
    plan: CorpusPlan,
    transform: ImageTransform,
    cache_dir: Path | None = None,
    progress: ProgressFn | None = None,
) -> ClipCache:
    """The corpus's preprocessed clip frames, decoded now or read from the cache."""
    cache_dir = Path(cache_dir) if cache_dir is not None else corpus_dir / CACHE_DIR
    gap_ms = round(1000 * transform.motion_gap_s)
    motion = f"-motion{gap_ms}ms" if transform.motion_gap_s > 0 else ""
    stem = cache_dir / f"clips-{transform.size}px{motion}"
    npy, meta_path = stem.with_suffix(".npy"), stem.with_suffix(".json")
    try:
        fingerprint = _fingerprint(corpus_dir, plan, transform)
    except FileNotFoundError as e:
        raise NotFoundError(f"{corpus_dir} lacks a file of its corpus: {e.filename}") from e
    if npy.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("fingerprint") == fingerprint:
                frames = np.load(npy, mmap_mode="r")
                offsets = {vid: (int(a), int(b)) for vid, (a, b) in meta["offsets"].items()}
                return ClipCache(frames, offsets, np.asarray(meta["times_s"]), transform)
        except (OSError, ValueError, KeyError) as e:
            log.warning("ignoring unreadable clip cache %s: %s", npy, e)
    chunks, times, offsets, row = [], [], {}, 0
    if progress is not None:
        progress(0, len(plan.videos))
    for done, video in enumerate(plan.videos, start=1):
        frames, t = decode_clip_frames(corpus_dir / VIDEOS_DIR / f"{video.vid}.mp4", transform)
        chunks.append(frames)
        times.append(t)
        offsets[video.vid] = (row, row + len(frames))
        row += len(frames)
        if progress is not None:
            progress(done, len(plan.videos))
    frames = np.concatenate(chunks)
    meta = {
        "fingerprint": fingerprint,
        "offsets": offsets,
        "times_s": np.concatenate(times).tolist(),
        "shape": list(frames.shape),
    }
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = npy.with_name(f".{npy.name}.part")
        with tmp.open("wb") as fh:
            np.save(fh, frames)
        os.replace(tmp, npy)
        tmp_meta = meta_path.with_name(f".{meta_path.name}.part")
        tmp_meta.write_text(json.dumps(meta), encoding="utf-8")
        os.replace(tmp_meta, meta_path)
    except OSError as e:  # a read-only corpus still trains, it just decodes every time
        log.warning("cannot write the clip cache to %s: %s", cache_dir, e.strerror or e)
    return ClipCache(frames, offsets, np.concatenate(times), transform)


# --- sentences ------------------------------------------------------------------------


@dataclass(frozen=True)
class Description:
    """A sentence about an event and the words it commits to (what it can match)."""

    text: str
    named: tuple[str, ...]
    entity: Entity
    action: str
    target_colour: str

    def matches(self, event: Event) -> bool:
        return query_matches(self.named, self.entity, self.action, self.target_colour, event)

    def concept_targets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """What the words say about the concepts: (entity labels, entity known, action
        labels, action known), float32 each. A concept the sentence leaves open (the
        colour of "the circle") is unknown, not negative."""
        said = {a: self.entity.value(a) for a in self.named}
        entity = np.zeros(len(ENTITY_CONCEPTS), np.float32)
        entity_known = np.zeros(len(ENTITY_CONCEPTS), np.float32)
        for i, name in enumerate(ENTITY_CONCEPTS):
            if "=" in name:
                attribute, value = name.split("=")
                if attribute in said:
                    entity_known[i] = 1.0
                    entity[i] = float(said[attribute] == value)
                continue
            size, colour, shape = name.split(" ")
            values = {"size": size, "colour": colour, "shape": shape}
            consistent = all(values[a] == v for a, v in said.items())
            entity[i] = float(consistent and len(said) == 3)
            entity_known[i] = float(not consistent or len(said) == 3)
        action = np.zeros(len(ACTION_CONCEPTS), np.float32)
        action_known = np.ones(len(ACTION_CONCEPTS), np.float32)
        for i, name in enumerate(ACTION_CONCEPTS):
            verb, _, colour = name.partition(" ")
            if not colour:
                action[i] = float(verb == self.action)
            elif verb == self.action:
                if "colour" in said:
                    action[i] = float(colour == said["colour"])
                else:
                    action_known[i] = 0.0
        return entity, entity_known, action, action_known


_NAMING_P = np.array([w for _, w in NAMINGS]) / sum(w for _, w in NAMINGS)
# Actions whose clips played backwards show another action.
REVERSED_ACTION: dict[str, str] = {
    "move_left": "move_right",
    "move_right": "move_left",
    "move_up": "move_down",
    "move_down": "move_up",
    "grow": "shrink",
    "shrink": "grow",
    "appear": "disappear",
    "disappear": "appear",
}


def describe_event(event: Event, rng: np.random.Generator) -> Description:
    """A random default-phrasing sentence for `event`, naming attributes as queries do."""
    named = NAMINGS[int(rng.choice(len(NAMINGS), p=_NAMING_P))][0]
    target = ""
    if event.action == "change_colour" and rng.random() < TARGET_NAMED_P:
        target = event.target_colour
    words = {a: event.entity.value(a) for a in named}
    text, _ = phrase_query(words, event.action, target or None, rng, heldout=False)
    return Description(text, tuple(named), event.entity, event.action, target)


def reverses(description: Description) -> bool:
    """Whether the event played backwards no longer fits the sentence ("turns blue"
    backwards turns from blue; "changes colour" backwards still changes colour)."""
    return description.action in REVERSED_ACTION or bool(description.target_colour)


def other_entities(video: VideoPlan, event: Event) -> list[Entity]:
    """The video's other objects, as they start and as each of their events starts."""
    out = [o.entity for i, o in enumerate(video.objects) if i != event.object_index]
    out.extend(e.entity for e in video.events if e.object_index != event.object_index)
    return out


def counterfactual_sentences(
    description: Description,
    k: int,
    rng: np.random.Generator,
    others: Sequence[Entity] = (),
    entity_swaps: int = 0,
) -> list[Description]:
    """`k` sentences that do not fit the described event: up to `entity_swaps` give its
    action to another object (`others`: the video's other objects, differing in a named
    attribute), the rest give the same object another action (or, for a named colour
    change, another new colour). The reversed action comes first when there is one."""
    if k == 0:
        return []
    first = REVERSED_ACTION.get(description.action)
    swaps: list[Description] = []
    if entity_swaps > 0:
        named = description.named
        said = tuple(description.entity.value(a) for a in named)
        distinct = {tuple(e.value(a) for a in named): e for e in others}
        candidates = [e for key, e in distinct.items() if key != said]
        room = min(entity_swaps, k - (first is not None))
        for index in rng.permutation(len(candidates))[:room]:
            entity = candidates[int(index)]
            words = {a: entity.value(a) for a in named}
            target = description.target_colour or None
            text, _ = phrase_query(words, description.action, target, rng, heldout=False)
            swaps.append(replace(description, text=text, entity=entity))
    colour = description.entity.value("colour")
    wrong: list[tuple[str, str]] = [
        (a, "") for a in ACTIONS if a not in (description.action, "change_colour")
    ]
    if description.action != "change_colour":
        wrong.append(("change_colour", ""))
    targets = [c for c in COLOURS if c not in (colour, description.target_colour)]
    if description.action != "change_colour" or description.target_colour:
        wrong.append(("change_colour", str(rng.choice(targets))))
    picks = [(first, "")] if first is not None else []  # swaps leave room for it
    rest = [w for w in wrong if w[0] != first]
    order = rng.permutation(len(rest))
    picks.extend(rest[int(i)] for i in order[: k - len(swaps) - len(picks)])
    words = {a: description.entity.value(a) for a in description.named}
    actions = []
    for action, target in picks:
        text, _ = phrase_query(words, action, target or None, rng, heldout=False)
        actions.append(Description(text, description.named, description.entity, action, target))
    lead = int(first is not None)
    return actions[:lead] + swaps + actions[lead:]


# --- labels ---------------------------------------------------------------------------


def _crop_box(video: VideoPlan) -> tuple[float, float, float, float]:
    """The centre square the model sees, as (x0, x1, y0, y1) fractions of the frame."""
    aspect = video.width / video.height
    half_x = 0.5 * min(1.0, 1.0 / aspect)
    half_y = 0.5 * min(1.0, aspect)
    return 0.5 - half_x, 0.5 + half_x, 0.5 - half_y, 0.5 + half_y


def _visible_states(
    video: VideoPlan, times_s: np.ndarray
) -> Iterator[tuple[int, ObjectState, str]]:
    """(time index, state, colour shown) of every object visible at each time: centre
    inside the crop and at least half opaque; mid colour change, the colour that covers
    most of it."""
    timeline = Timeline(video)
    x0, x1, y0, y1 = _crop_box(video)
    for i, t in enumerate(times_s):
        for s in timeline.states(float(t)):
            if s.alpha < 0.5 or not (x0 <= s.x <= x1 and y0 <= s.y <= y1):
                continue
            yield i, s, s.wipe_colour if s.wipe_colour and s.wipe >= 0.5 else s.colour


def entity_labels(video: VideoPlan, times_s: np.ndarray) -> np.ndarray:
    """(n, len(ENTITY_CONCEPTS)) float32: objects visible (centre inside the crop, at
    least half opaque) at each time, with the colour and size they show."""
    labels = np.zeros((len(times_s), len(ENTITY_CONCEPTS)), np.float32)
    for i, s, colour in _visible_states(video, times_s):
        size = "large" if s.radius >= _RADIUS_MID else "small"
        for name in (f"colour={colour}", f"shape={s.shape}", f"size={size}"):
            labels[i, _ENTITY_INDEX[name]] = 1.0
        labels[i, _ENTITY_INDEX[f"{size} {colour} {s.shape}"]] = 1.0
    return labels


def geometry_labels(video: VideoPlan, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, len(GEOMETRY_TARGETS)) float32 targets and known mask at each time: for each
    colour whose object is visible (as in `entity_labels`), its centre in the crop
    (-1..1), its radius (-1 small .. 1 large) and its turn (sin, cos of order x angle,
    known for shapes with a rotational order only)."""
    x0, x1, y0, y1 = _crop_box(video)
    width = len(GEOMETRY_PARTS)
    targets = np.zeros((len(times_s), len(GEOMETRY_TARGETS)), np.float32)
    known = np.zeros_like(targets)
    for i, s, colour in _visible_states(video, times_s):
        at = _COLOUR_SLOT[colour] * width
        targets[i, at] = 2.0 * (s.x - x0) / (x1 - x0) - 1.0
        targets[i, at + 1] = 2.0 * (s.y - y0) / (y1 - y0) - 1.0
        targets[i, at + 2] = (s.radius - _RADIUS_MID) / _RADIUS_HALF_RANGE
        known[i, at : at + 3] = 1.0
        order = ROTATION_ORDER.get(s.shape)
        if order is not None:
            turn = np.deg2rad(order * s.angle_deg)
            targets[i, at + 3], targets[i, at + 4] = np.sin(turn), np.cos(turn)
            known[i, at + 3 : at + 5] = 1.0
    return targets, known


def covers(event_clips: tuple[int, int], span: tuple[int, int]) -> bool:
    """Whether an event and a clip span overlap by at least half the shorter of the two."""
    overlap = min(event_clips[1], span[1]) - max(event_clips[0], span[0])
    shorter = min(event_clips[1] - event_clips[0], span[1] - span[0])
    return overlap > 0 and 2 * overlap >= shorter


def iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = min(a[1], b[1]) - max(a[0], b[0])
    union = max(a[1], b[1]) - min(a[0], b[0])
    return max(0.0, inter) / union if union > 0 else 0.0


# --- the corpus -----------------------------------------------------------------------


@dataclass(frozen=True)
class VideoClips:
    """One video of the corpus: its plan, its cache rows and its events in clip units."""

    plan: VideoPlan
    first_row: int
    n_clips: int
    event_clips: tuple[tuple[int, int], ...]  # per event: [first clip, end clip)

    def clip_range(self, event_index: int) -> tuple[int, int]:
        return self.event_clips[event_index]


@dataclass(frozen=True)
class EventRef:
    video: int  # index into TrainingCorpus.videos
    event: int  # index into that video's events


@dataclass
class EventBatch:
    """Stage 1: one window of clips around each of B events, and a sentence per event."""

    rows: np.ndarray  # (B * L,) cache rows, window by window (padding repeats a row)
    valid: np.ndarray  # (B, L) bool: real clips of each window
    texts: list[str]  # (B,)
    text_image: np.ndarray  # (B, B * L) bool: the sentence fits the event at that clip
    text_window: np.ndarray  # (B, B) bool: the sentence fits an event filling that window
    entity_labels: np.ndarray  # (B * L, E) float32
    geometry: np.ndarray  # (B * L, G) float32 targets
    geometry_known: np.ndarray  # (B * L, G) float32 mask
    action_labels: np.ndarray  # (B, A) float32
    text_concepts: tuple[np.ndarray, ...]  # (B, E) labels, known, (B, A) labels, known
    counterfactuals: list[str]  # (B * K,) K sentences per sentence, none fits its event
    reverses: np.ndarray  # (B,) bool: the event played backwards does not fit the sentence


@dataclass
class VideoBatch:
    """Stage 2: whole videos (their clip features) and sentences about their events."""

    videos: list[int]  # (V,) corpus video indices
    texts: list[str]  # (S,)
    text_video: np.ndarray  # (S, V) bool
    windows: list[tuple[int, int, int]]  # (batch video, start, end) clip ranges
    text_window: np.ndarray  # (S, n_windows) float32: IoU^2 with the fitted event, or 0
    states: list[tuple[int, int, int]]
    text_state: np.ndarray  # (S, n_states) bool: the state overlaps a fitted event
    text_clip: np.ndarray  # (S, n_clips of all V videos) bool: inside a fitted event
    window_action_labels: np.ndarray  # (n_windows, A) float32
    text_concepts: tuple[np.ndarray, ...]  # (S, E) labels, known, (S, A) labels, known
    counterfactuals: list[str]  # (S * K,) K sentences per sentence, none fits its event
    reverses: np.ndarray  # (S,) bool: the event played backwards does not fit the sentence


class TrainingCorpus:
    """One or more `vtr synth` corpora ready for training: plans, cached pixels, labels,
    events. Rows number every clip of every corpus, corpus after corpus."""

    def __init__(self, parts: Sequence[tuple[CorpusPlan, ClipCache]]) -> None:
        if not parts:
            raise InputError("no corpus to train on")
        transforms = {cache.transform for _, cache in parts}
        if len(transforms) != 1:
            raise InputError("the corpora were cached with different image transforms")
        self.transform = parts[0][1].transform
        self.plans = [plan for plan, _ in parts]
        self.caches = [cache for _, cache in parts]
        self.bases = np.cumsum([0] + [len(cache.frames) for cache in self.caches])
        self.videos: list[VideoClips] = []
        labels, geometry, known = [], [], []
        for (plan, cache), base in zip(parts, self.bases, strict=False):
            for video in plan.videos:
                first, end = cache.offsets[video.vid]
                n = end - first
                spans = []
                for ev in video.events:
                    a = round(ev.start_s / CLIP_SECONDS)
                    b = max(a + 1, round(ev.end_s / CLIP_SECONDS))
                    spans.append((min(a, n - 1), min(b, n)))
                self.videos.append(VideoClips(video, int(base) + first, n, tuple(spans)))
                labels.append(entity_labels(video, cache.times_s[first:end]))
                pose, pose_known = geometry_labels(video, cache.times_s[first:end])
                geometry.append(pose)
                known.append(pose_known)
        self.entity_labels = np.concatenate(labels)  # (N, E), by row
        self.geometry = np.concatenate(geometry)  # (N, G), by row
        self.geometry_known = np.concatenate(known)  # (N, G)
        self.events = [
            EventRef(v, e) for v, vc in enumerate(self.videos) for e in range(len(vc.event_clips))
        ]
        if not self.events:
            raise InputError("the corpus has no events to train on")

    @classmethod
    def load(
        cls,
        corpus_dirs: Path | Sequence[Path],
        transform: ImageTransform,
        cache_dir: Path | None = None,
        progress: ProgressFn | None = None,
    ) -> "TrainingCorpus":
        """Corpora from their directories (clip frames decoded once, then cached)."""
        dirs = [Path(corpus_dirs)] if isinstance(corpus_dirs, str | Path) else list(corpus_dirs)
        parts = []
        for i, corpus_dir in enumerate(dirs):
            plan = load_world(corpus_dir / WORLD_NAME)
            where = cache_dir / str(i) if cache_dir is not None and len(dirs) > 1 else cache_dir
            parts.append((plan, load_clip_cache(corpus_dir, plan, transform, where, progress)))
        return cls(parts)

    @property
    def n_clips(self) -> int:
        return int(self.bases[-1])

    @property
    def queries(self) -> list[SynthQuery]:
        return [q for plan in self.plans for q in plan.queries]

    def pixels(self, rows: np.ndarray) -> torch.Tensor:
        """Rows -> (n, C, S, S) float32, normalised as the encoder expects."""
        rows = np.asarray(rows)
        part = np.searchsorted(self.bases, rows, side="right") - 1  # (n,)
        size = self.transform.size
        out = torch.empty(len(rows), self.transform.channels, size, size)
        for p in np.unique(part):
            at = np.nonzero(part == p)[0]
            out[torch.from_numpy(at)] = self.caches[p].pixels(rows[at] - self.bases[p])
        return out

    def action_labels(self, video: int, span: tuple[int, int]) -> np.ndarray:
        """(A,) float32: actions (and action x actor colour) of events filling `span`."""
        vc = self.videos[video]
        out = np.zeros(len(ACTION_CONCEPTS), np.float32)
        for ev, clips in zip(vc.plan.events, vc.event_clips, strict=True):
            if covers(clips, span):
                out[_ACTION_INDEX[ev.action]] = 1.0
                out[_ACTION_INDEX[f"{ev.action} {ev.entity.colour}"]] = 1.0
        return out

    def concept_rates(self) -> tuple[np.ndarray, np.ndarray]:
        """Base rates of the entity concepts (over clips) and action concepts (over the
        events' own spans), for the classifiers' prior initialisation."""
        actions = np.stack(
            [
                self.action_labels(r.video, self.videos[r.video].clip_range(r.event))
                for r in self.events
            ]
        )
        return self.entity_labels.mean(axis=0), actions.mean(axis=0)

    def _window_around(
        self, ref: EventRef, length: int, rng: np.random.Generator
    ) -> tuple[int, int]:
        n = self.videos[ref.video].n_clips
        a, b = self.videos[ref.video].clip_range(ref.event)
        if n <= length:
            return 0, n
        if b - a >= length:
            start = int(rng.integers(a, b - length + 1))
        else:
            low, high = max(0, b - length), min(a, n - length)
            start = int(rng.integers(low, high + 1))
        return start, start + length

    def event_batch(
        self,
        refs: Sequence[EventRef],
        window: int,
        rng: np.random.Generator,
        counterfactuals: int = 0,
        entity_swaps: int = 0,
    ) -> EventBatch:
        """A window of `window` clips around each event (inside it when the event is
        longer), one fresh sentence per event, `counterfactuals` sentences that do not fit
        it (`counterfactual_sentences`), and what fits what."""
        descriptions = [
            describe_event(self.videos[r.video].plan.events[r.event], rng) for r in refs
        ]
        spans = [self._window_around(r, window, rng) for r in refs]
        n = len(refs)
        rows = np.zeros((n, window), np.int64)
        valid = np.zeros((n, window), bool)
        text_image = np.zeros((n, n, window), bool)
        text_window = np.zeros((n, n), bool)
        actions = np.zeros((n, len(ACTION_CONCEPTS)), np.float32)
        for j, (ref, (start, end)) in enumerate(zip(refs, spans, strict=True)):
            vc = self.videos[ref.video]
            length = end - start
            rows[j, :length] = vc.first_row + np.arange(start, end)
            rows[j, length:] = vc.first_row + end - 1
            valid[j, :length] = True
            actions[j] = self.action_labels(ref.video, (start, end))
            for ev, (a, b) in zip(vc.plan.events, vc.event_clips, strict=True):
                fits = [i for i, d in enumerate(descriptions) if d.matches(ev)]
                if not fits:
                    continue
                inside = (np.arange(start, start + window) >= a) & (
                    np.arange(start, start + window) < b
                )
                inside &= valid[j]
                for i in fits:
                    text_image[i, j] |= inside
                    if covers((a, b), (start, end)):
                        text_window[i, j] = True
        return EventBatch(
            rows=rows.reshape(-1),
            valid=valid,
            texts=[d.text for d in descriptions],
            text_image=text_image.reshape(n, n * window),
            text_window=text_window,
            entity_labels=self.entity_labels[rows.reshape(-1)],
            geometry=self.geometry[rows.reshape(-1)],
            geometry_known=self.geometry_known[rows.reshape(-1)],
            action_labels=actions,
            text_concepts=text_concepts(descriptions),
            counterfactuals=self._counterfactuals(
                descriptions,
                [(r.video, r.event) for r in refs],
                counterfactuals,
                entity_swaps,
                rng,
            ),
            reverses=np.array([reverses(d) for d in descriptions], bool),
        )

    def _counterfactuals(
        self,
        descriptions: Sequence[Description],
        events: Sequence[tuple[int, int]],
        k: int,
        entity_swaps: int,
        rng: np.random.Generator,
    ) -> list[str]:
        """`counterfactual_sentences` of each description of (video, event)."""
        out: list[str] = []
        for d, (v, e) in zip(descriptions, events, strict=True):
            plan = self.videos[v].plan
            others = other_entities(plan, plan.events[e]) if entity_swaps else []
            out.extend(c.text for c in counterfactual_sentences(d, k, rng, others, entity_swaps))
        return out

    def video_batch(
        self,
        videos: Sequence[int],
        layouts: Sequence[dict[str, list[tuple[int, int]]]],
        sentences_per_video: int,
        rng: np.random.Generator,
        counterfactuals: int = 0,
        entity_swaps: int = 0,
    ) -> VideoBatch:
        """Sentences about up to `sentences_per_video` events of each video, and their fit
        to every video, action window, entity state and clip of the batch. `layouts[v]`
        holds video v's "action" and "entity" clip ranges (the index's layout). Each
        sentence gets `counterfactuals` sentences that do not fit its event
        (`counterfactual_sentences`)."""
        descriptions: list[Description] = []
        described: list[tuple[int, int]] = []  # (video, event) of each description
        for v in videos:
            events = self.videos[v].plan.events
            picks = rng.permutation(len(events))[:sentences_per_video]
            descriptions.extend(describe_event(events[int(e)], rng) for e in picks)
            described.extend((v, int(e)) for e in picks)
        windows = [(p, a, b) for p, v in enumerate(videos) for a, b in layouts[v]["action"]]
        states = [(p, a, b) for p, v in enumerate(videos) for a, b in layouts[v]["entity"]]
        clip_start = np.cumsum([0] + [self.videos[v].n_clips for v in videos])
        n_text = len(descriptions)
        text_video = np.zeros((n_text, len(videos)), bool)
        text_window = np.zeros((n_text, len(windows)), np.float32)
        text_state = np.zeros((n_text, len(states)), bool)
        text_clip = np.zeros((n_text, int(clip_start[-1])), bool)
        fitted: list[list[list[tuple[int, int]]]] = [[] for _ in videos]  # [pos][text]
        for p, v in enumerate(videos):
            vc = self.videos[v]
            per_text: list[list[tuple[int, int]]] = [[] for _ in descriptions]
            for ev, span in zip(vc.plan.events, vc.event_clips, strict=True):
                for i, d in enumerate(descriptions):
                    if d.matches(ev):
                        per_text[i].append(span)
                        text_clip[i, clip_start[p] + span[0] : clip_start[p] + span[1]] = True
            fitted[p] = per_text
            text_video[:, p] = [bool(spans) for spans in per_text]
        for w, (p, a, b) in enumerate(windows):
            for i, spans in enumerate(fitted[p]):
                best = max((iou((a, b), s) for s in spans), default=0.0)
                text_window[i, w] = best * best
        for s, (p, a, b) in enumerate(states):
            for i, spans in enumerate(fitted[p]):
                text_state[i, s] = any(min(b, e) > max(a, st) for st, e in spans)
        actions = np.stack([self.action_labels(videos[p], (a, b)) for p, a, b in windows])
        return VideoBatch(
            videos=list(videos),
            texts=[d.text for d in descriptions],
            text_video=text_video,
            windows=windows,
            text_window=text_window,
            states=states,
            text_state=text_state,
            text_clip=text_clip,
            window_action_labels=actions,
            text_concepts=text_concepts(descriptions),
            counterfactuals=self._counterfactuals(
                descriptions, described, counterfactuals, entity_swaps, rng
            ),
            reverses=np.array([reverses(d) for d in descriptions], bool),
        )


def text_concepts(descriptions: Sequence[Description]) -> tuple[np.ndarray, ...]:
    """Stacked `Description.concept_targets` of a batch: 4 arrays of (B, concepts)."""
    parts = [d.concept_targets() for d in descriptions]
    return tuple(np.stack([p[k] for p in parts]) for k in range(4))


def training_texts() -> list[str]:
    """Strings covering every word the default phrasing can produce (for the vocabulary)."""
    from engine.synth import phrasing

    texts: list[str] = []
    texts.extend(t.format(subject=" ", verb=" ") for t in phrasing.DEFAULT_TEMPLATES)
    for verbs in phrasing.DEFAULT_VERBS.values():
        texts.extend(v.format(target=" ") for v in verbs)
    for table in (phrasing.SIZE_WORDS, phrasing.COLOUR_WORDS, phrasing.SHAPE_WORDS):
        for words in table.values():
            texts.extend(words)
    texts.extend(phrasing.DETERMINERS)
    return texts


def summary(corpus: TrainingCorpus) -> dict[str, Any]:
    """Sizes of a training corpus, for logs and checkpoints."""
    return {
        "videos": len(corpus.videos),
        "clips": corpus.n_clips,
        "events": len(corpus.events),
        "queries": len(corpus.queries),
        "seeds": [plan.seed for plan in corpus.plans],
    }
