"""The synthetic video world: scenes, events on a continuous clock, and unique queries.

A video shows a few objects (shape x colour x size) on a background. Over time objects
act (move left/right/up/down, appear, disappear, grow, shrink, spin, bounce, change
colour), one event at a time, each 4-20 s long on a 2 s grid (QVHighlights' clip unit);
between and beside events every object keeps wobbling gently and striped backgrounds
drift, so no stretch of video is static. A query names some of an object's attributes
and its action ("the small red circle slides to the left"); its ground truth is the
event's window.

Every query has exactly one matching event in its corpus, so corpus-level metrics are
exact. The planner guarantees it by construction and then checks it by brute force:
- an event's *key* is (shape, colour, size at the event's start, action, target colour);
- keys are split at random into a query pool and a shared pool; distractor events draw
  only shared keys (so they repeat across videos: same objects, same actions), while
  each query takes query-pool keys that no event and no other query has used: its own
  event's key, plus every key its wording would also match (e.g. "the red circle moves
  left" also covers the large and the small red circle);
- a candidate event or wording that would break this is resampled.
Grow turns a small object large and shrink a large one small; a colour change recolours
it for good; colours are never shared within a video, so a colour names one object.

Pure Python and numpy, no I/O; `engine.synth.render` draws and writes the files.

    corpus = plan_corpus(n_videos=10, seed=0)
    timeline = Timeline(corpus.videos[0])
    states = timeline.states(t_s=3.5)        # every object's pose at 3.5 s
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, NamedTuple

import numpy as np

from engine.errors import InputError, VtrError
from engine.synth.phrasing import phrase_query

# --- vocabulary -----------------------------------------------------------------------

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring")
# Saturated colours that stay apart after yuv420p compression, and from the backgrounds.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (40, 195, 60),
    "blue": (50, 95, 240),
    "yellow": (240, 220, 40),
    "purple": (160, 60, 215),
    "orange": (250, 140, 20),
    "white": (240, 240, 240),
}
SIZES: tuple[str, ...] = ("small", "large")
SIZE_RADIUS: dict[str, float] = {"small": 0.09, "large": 0.16}  # fraction of frame height
SPINNABLE: frozenset[str] = frozenset({"square", "triangle", "star"})  # circles look still
MOVES: dict[str, tuple[int, int]] = {
    "move_left": (-1, 0),
    "move_right": (1, 0),
    "move_up": (0, -1),
    "move_down": (0, 1),
}
ACTIONS: tuple[str, ...] = (
    *MOVES,
    "appear",
    "disappear",
    "grow",
    "shrink",
    "spin",
    "bounce",
    "change_colour",
)
ATTRIBUTES: tuple[str, ...] = ("size", "colour", "shape")

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class Background:
    """A backdrop: plain, gradient (colour_a -> colour_b) or stripes drifting sideways."""

    name: str
    kind: Literal["plain", "gradient", "stripes"]
    colour_a: Colour
    colour_b: Colour
    vertical: bool = True  # gradient top -> bottom (else left -> right); stripes upright
    period: float = 0.25  # stripes: one light + one dark stripe, fraction of frame height
    drift: float = 0.0  # stripes: scroll speed, fraction of frame height per second


# Dark, low-saturation backdrops, so every object colour stands out.
BACKGROUNDS: tuple[Background, ...] = (
    Background("charcoal", "plain", (42, 42, 46), (42, 42, 46)),
    Background("slate", "plain", (36, 46, 62), (36, 46, 62)),
    Background("dusk", "gradient", (18, 22, 52), (62, 44, 58), vertical=True),
    Background("moss", "gradient", (22, 44, 34), (58, 58, 42), vertical=False),
    Background("pinstripe", "stripes", (58, 58, 62), (30, 30, 34), True, 0.25, 0.06),
    Background("diagonal", "stripes", (48, 40, 34), (26, 24, 22), False, 0.3, 0.05),
)
BACKGROUND_BY_NAME: dict[str, Background] = {b.name: b for b in BACKGROUNDS}

# --- timing and motion constants (space in fractions of frame height unless noted) -----

CLIP_SECONDS = 2.0  # QVHighlights clip length; event boundaries lie on this grid
MIN_EVENT_S, MAX_EVENT_S = 4.0, 20.0
MAX_GAP_S = 6.0  # idle time between two events
WOBBLE_MAX = 0.02  # idle circular wobble radius
EDGE_PAD = 0.02
MOVE_X = (0.25, 0.5)  # horizontal move distance range, fraction of frame width
MOVE_Y = (0.25, 0.45)  # vertical move distance range
HOP = (0.12, 0.22)  # bounce height range
SPIN_DEG_PER_S = (60.0, 120.0)
HOP_SECONDS = 1.4  # about one hop per this many seconds
INNER_SCALE_MIN = 0.4  # appear/disappear: size at the invisible end, fraction of full size
QUERY_POOL_FRACTION = 0.8  # share of event keys kept for queries
NAMINGS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("size", "colour", "shape"), 0.55),
    (("colour", "shape"), 0.25),
    (("size", "shape"), 0.1),
    (("shape",), 0.1),
)
TARGET_NAMED_P = 0.75  # change_colour: probability that the query names the new colour


def margin_y() -> float:
    """Closest an object's centre gets to the top/bottom edge (fraction of height)."""
    return SIZE_RADIUS["large"] + WOBBLE_MAX + EDGE_PAD


def margin_x(aspect: float) -> float:
    """Closest an object's centre gets to the left/right edge (fraction of width)."""
    return margin_y() / aspect


def progress(action: str, u: float) -> float:
    """How far an event has got (0..1) at fraction `u` of its time: eased for all
    actions but bounce, whose hops come at an even pace."""
    u = min(1.0, max(0.0, u))
    return u if action == "bounce" else u * u * (3.0 - 2.0 * u)


# --- model ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Entity:
    """An object's attributes at some moment."""

    shape: str
    colour: str
    size: str

    def value(self, attribute: str) -> str:
        return str(getattr(self, attribute))


class EventKey(NamedTuple):
    """What a query can say about an event: object attributes, action, target colour."""

    shape: str
    colour: str
    size: str
    action: str
    target: str  # change_colour: the new colour; "" otherwise


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene, as it is at t = 0."""

    shape: str
    colour: str
    size: str
    x: float  # centre, fraction of frame width
    y: float  # centre, fraction of frame height (0 = top)
    visible: bool = True
    angle_deg: float = 0.0
    wobble: float = 0.0  # idle wobble radius, fraction of frame height
    wobble_period_s: float = 4.0
    wobble_phase: float = 0.0  # radians

    @property
    def entity(self) -> Entity:
        return Entity(self.shape, self.colour, self.size)


@dataclass(frozen=True)
class Event:
    """One object doing one action over [start_s, end_s]."""

    object_index: int
    action: str
    start_s: float
    end_s: float
    entity: Entity  # the object's attributes when the event starts
    target_colour: str = ""  # change_colour
    dx: float = 0.0  # moves: displacement, fraction of frame width (right positive)
    dy: float = 0.0  # moves: displacement, fraction of frame height (down positive)
    turns: float = 0.0  # spin: full turns (clockwise on screen)
    hops: int = 0  # bounce
    hop_height: float = 0.0  # bounce: fraction of frame height

    @property
    def key(self) -> EventKey:
        e = self.entity
        return EventKey(e.shape, e.colour, e.size, self.action, self.target_colour)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class VideoPlan:
    """Everything needed to render one video: the world, not the pixels."""

    vid: str
    duration_s: float
    fps: float
    width: int
    height: int
    background: Background
    objects: tuple[SceneObject, ...]
    events: tuple[Event, ...]  # by start time, never overlapping

    @property
    def n_frames(self) -> int:
        return round(self.duration_s * self.fps)


@dataclass(frozen=True)
class SynthQuery:
    """One query and its single correct moment."""

    qid: int
    vid: str
    text: str
    template: str  # the sentence frame used (phrasing.DEFAULT_TEMPLATES or HELDOUT_...)
    event_index: int  # into the video's events
    named: tuple[str, ...]  # attributes the text names, subset of ("size", "colour", "shape")
    entity: Entity  # the acting object's attributes (all of them, named or not)
    action: str
    target_colour: str  # named target colour (change_colour), else ""
    window: tuple[float, float]  # seconds
    relevant_clip_ids: tuple[int, ...]
    saliency_scores: tuple[tuple[int, int, int], ...]  # per relevant clip, 3 annotators 0..4

    def matches(self, event: Event) -> bool:
        """Whether `event` fits this query's words (named attributes, action, target)."""
        return query_matches(self.named, self.entity, self.action, self.target_colour, event)


@dataclass(frozen=True)
class CorpusPlan:
    """A whole corpus: the videos and their queries, plus how it was made."""

    seed: int
    videos: tuple[VideoPlan, ...]
    queries: tuple[SynthQuery, ...]
    heldout_phrasing: bool = False
    settings: Mapping[str, Any] = field(default_factory=dict)  # planner arguments

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (tuples as lists); `corpus_from_dict` reads it back."""
        data: dict[str, Any] = asdict(self)
        data["settings"] = dict(self.settings)
        return data


def query_matches(
    named: Sequence[str], entity: Entity, action: str, target_colour: str, event: Event
) -> bool:
    """Whether `event` fits a query naming attributes `named` of `entity`, `action` and
    (when not "") `target_colour`."""
    if event.action != action:
        return False
    if target_colour and event.target_colour != target_colour:
        return False
    return all(event.entity.value(a) == entity.value(a) for a in named)


# --- keys -----------------------------------------------------------------------------


def actions_for(entity: Entity) -> list[tuple[str, str]]:
    """(action, target colour) pairs an object with these attributes can ever do."""
    out = [(a, "") for a in (*MOVES, "appear", "disappear", "bounce")]
    out.append(("grow", "") if entity.size == "small" else ("shrink", ""))
    if entity.shape in SPINNABLE:
        out.append(("spin", ""))
    out.extend(("change_colour", c) for c in COLOURS if c != entity.colour)
    return out


def all_entities() -> list[Entity]:
    return [Entity(s, c, z) for s in SHAPES for c in COLOURS for z in SIZES]


def all_event_keys() -> list[EventKey]:
    """Every key an event can have, in a fixed order."""
    return [
        EventKey(e.shape, e.colour, e.size, a, t) for e in all_entities() for a, t in actions_for(e)
    ]


def expand_query(
    named: Sequence[str], entity: Entity, action: str, target_colour: str
) -> set[EventKey]:
    """Every possible event key a query's words would match."""
    return {
        k
        for k in all_event_keys()
        if k.action == action
        and (not target_colour or k.target == target_colour)
        and all(getattr(k, a) == entity.value(a) for a in named)
    }


# --- timeline -------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectState:
    """An object's pose at one instant, as the renderer draws it."""

    index: int
    shape: str
    x: float  # centre, fraction of frame width
    y: float  # centre, fraction of frame height
    radius: float  # fraction of frame height
    angle_deg: float
    colour: str
    wipe_colour: str  # change_colour in progress: the new colour ("" otherwise)
    wipe: float  # fraction of the object's width (from the left) already in wipe_colour
    alpha: float  # opacity 0..1
    active: bool  # inside one of its events (drawn on top)


@dataclass
class _Base:
    """An object's settled state between events."""

    x: float
    y: float
    size: str
    colour: str
    visible: bool
    angle_deg: float

    def entity(self, shape: str) -> Entity:
        return Entity(shape, self.colour, self.size)


def _after(base: _Base, event: Event) -> _Base:
    """The settled state once `event` has finished."""
    out = replace(base)
    if event.action in MOVES:
        out.x, out.y = base.x + event.dx, base.y + event.dy
    elif event.action == "appear":
        out.visible = True
    elif event.action == "disappear":
        out.visible = False
    elif event.action == "grow":
        out.size = "large"
    elif event.action == "shrink":
        out.size = "small"
    elif event.action == "spin":
        out.angle_deg = (base.angle_deg + 360.0 * event.turns) % 360.0
    elif event.action == "change_colour":
        out.colour = event.target_colour
    return out


def _check_applicable(base: _Base, shape: str, event: Event, where: str) -> None:
    """Raise InputError when `event` cannot happen to an object in state `base`."""
    if event.action not in ACTIONS:
        raise InputError(f"{where}: unknown action {event.action!r}; known: {', '.join(ACTIONS)}")
    if event.entity != base.entity(shape):
        raise InputError(f"{where}: says {event.entity} but the object is {base.entity(shape)}")
    if (event.action == "appear") == base.visible:
        raise InputError(f"{where}: {event.action} while {'' if base.visible else 'in'}visible")
    problems = {
        "grow": base.size != "small",
        "shrink": base.size != "large",
        "spin": shape not in SPINNABLE or event.turns <= 0,
        "bounce": event.hops < 1 or event.hop_height <= 0,
        "change_colour": event.target_colour not in COLOURS or event.target_colour == base.colour,
    }
    if problems.get(event.action, False):
        raise InputError(f"{where}: {event.action} is not possible here ({event})")
    if event.action != "change_colour" and event.target_colour:
        raise InputError(f"{where}: only change_colour has a target colour")


class Timeline:
    """The state of every object of a video at any time (continuous clock).

    Building it replays the events and raises InputError if the plan is inconsistent
    (unknown action, overlapping events of one object, an event whose stated attributes
    differ from the object's, an impossible action, an object leaving the frame).
    """

    def __init__(self, video: VideoPlan) -> None:
        self.video = video
        self.aspect = video.width / video.height
        n = len(video.objects)
        bases = [_Base(o.x, o.y, o.size, o.colour, o.visible, o.angle_deg) for o in video.objects]
        # per object: (event index, event, state before, state after), by time
        self._tracks: list[list[tuple[int, Event, _Base, _Base]]] = [[] for _ in range(n)]
        last_end = [0.0] * n
        for i, ev in enumerate(video.events):
            where = f"video {video.vid} event {i}"
            if not 0 <= ev.object_index < n:
                raise InputError(f"{where}: no object {ev.object_index}")
            if not (0.0 <= ev.start_s < ev.end_s <= video.duration_s + 1e-9):
                raise InputError(f"{where}: window {ev.start_s}..{ev.end_s} outside the video")
            if ev.start_s < last_end[ev.object_index] - 1e-9:
                raise InputError(f"{where}: overlaps an earlier event of the same object")
            obj = video.objects[ev.object_index]
            before = bases[ev.object_index]
            _check_applicable(before, obj.shape, ev, where)
            after = _after(before, ev)
            low_y = min(before.y, after.y) - (ev.hop_height if ev.action == "bounce" else 0.0)
            if not (0.0 < after.x < 1.0 and low_y > 0.0 and max(before.y, after.y) < 1.0):
                raise InputError(f"{where}: the object leaves the frame")
            self._tracks[ev.object_index].append((i, ev, before, after))
            bases[ev.object_index] = after
            last_end[ev.object_index] = ev.end_s
        self._initial = [
            _Base(o.x, o.y, o.size, o.colour, o.visible, o.angle_deg) for o in video.objects
        ]

    def state(self, index: int, t_s: float) -> ObjectState:
        """Object `index`'s pose at time `t_s` (seconds)."""
        obj = self.video.objects[index]
        base, current = self._initial[index], None
        for _, ev, before, after in self._tracks[index]:
            if t_s < ev.start_s:
                break
            if t_s < ev.end_s:
                base, current = before, ev
                break
            base = after
        x, y = base.x, base.y
        radius = SIZE_RADIUS[base.size]
        angle, alpha = base.angle_deg, 1.0 if base.visible else 0.0
        wipe_colour, wipe = "", 0.0
        if current is not None:
            u = (t_s - current.start_s) / current.duration_s
            p = progress(current.action, u)
            action = current.action
            if action in MOVES:
                x, y = x + current.dx * p, y + current.dy * p
            elif action in ("appear", "disappear"):
                shown = p if action == "appear" else 1.0 - p
                alpha = shown
                radius *= INNER_SCALE_MIN + (1.0 - INNER_SCALE_MIN) * shown
            elif action in ("grow", "shrink"):
                small, large = SIZE_RADIUS["small"], SIZE_RADIUS["large"]
                radius = small + (large - small) * (p if action == "grow" else 1.0 - p)
            elif action == "spin":
                angle = base.angle_deg + 360.0 * current.turns * p
            elif action == "bounce":
                y -= current.hop_height * abs(math.sin(math.pi * current.hops * p))
            elif action == "change_colour":
                wipe_colour, wipe = current.target_colour, p
        if obj.wobble > 0:
            phase = 2.0 * math.pi * t_s / obj.wobble_period_s + obj.wobble_phase
            x += obj.wobble * math.cos(phase) / self.aspect
            y += obj.wobble * math.sin(phase)
        return ObjectState(
            index=index,
            shape=obj.shape,
            x=x,
            y=y,
            radius=radius,
            angle_deg=angle % 360.0,
            colour=base.colour,
            wipe_colour=wipe_colour,
            wipe=wipe,
            alpha=alpha,
            active=current is not None,
        )

    def states(self, t_s: float) -> list[ObjectState]:
        """Every object's pose at `t_s`, in drawing order (objects inside an event last)."""
        out = [self.state(i, t_s) for i in range(len(self.video.objects))]
        return sorted(out, key=lambda s: s.active)  # stable: index order otherwise


# --- annotations ----------------------------------------------------------------------


def clip_saliency(
    action: str, start_s: float, end_s: float, clip_s: float = CLIP_SECONDS
) -> tuple[tuple[int, ...], tuple[tuple[int, int, int], ...]]:
    """Relevant clip ids and 3 annotators' 0..4 scores for an event over [start, end].

    A clip's score follows how much of the event's change happens inside it (its share
    of the eased progress), relative to the busiest clip: s = 4 * share / max share.
    The three annotators round s to nearest, down and up.
    """
    first, last = math.floor(start_s / clip_s + 1e-9), math.ceil(end_s / clip_s - 1e-9)
    ids = tuple(range(first, last))
    length = end_s - start_s
    shares = []
    for i in ids:
        a, b = max(start_s, i * clip_s), min(end_s, (i + 1) * clip_s)
        shares.append(
            progress(action, (b - start_s) / length) - progress(action, (a - start_s) / length)
        )
    top = max(shares)
    scores = []
    for share in shares:
        s = round(4.0 * share / top, 6)
        trio = (math.floor(s + 0.5), math.floor(s), math.ceil(s))
        scores.append(tuple(min(4, max(0, v)) for v in trio))
    return ids, tuple((a, b, c) for a, b, c in scores)


def _number(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


def annotation_rows(corpus: CorpusPlan) -> list[dict[str, Any]]:
    """QVHighlights jsonl objects, one per query, in qid order."""
    durations = {v.vid: v.duration_s for v in corpus.videos}
    return [
        {
            "qid": q.qid,
            "query": q.text,
            "vid": q.vid,
            "duration": _number(durations[q.vid]),
            "relevant_windows": [[_number(q.window[0]), _number(q.window[1])]],
            "relevant_clip_ids": list(q.relevant_clip_ids),
            "saliency_scores": [list(s) for s in q.saliency_scores],
        }
        for q in corpus.queries
    ]


# --- planning -------------------------------------------------------------------------


@dataclass
class _Target:
    """A query event chosen before its video's timeline exists."""

    key: EventKey
    named: tuple[str, ...]
    target_named: bool


class _Planner:
    """Plans videos one by one, keeping the corpus-wide key reservations."""

    def __init__(
        self,
        rng: np.random.Generator,
        min_seconds: float,
        max_seconds: float,
        fps: float,
        size: tuple[int, int],
        queries_per_minute: float,
    ) -> None:
        self.rng = rng
        self.min_seconds, self.max_seconds = min_seconds, max_seconds
        self.fps, (self.width, self.height) = fps, size
        self.aspect = self.width / self.height
        self.queries_per_minute = queries_per_minute
        keys = all_event_keys()
        order = rng.permutation(len(keys))
        n_query = round(QUERY_POOL_FRACTION * len(keys))
        self.query_pool = {keys[i] for i in order[:n_query]}
        self.shared_pool = {keys[i] for i in order[n_query:]}
        self.free = set(self.query_pool)  # query-pool keys no query has reserved
        self.free_by_action: dict[str, list[EventKey]] = {a: [] for a in ACTIONS}
        for k in keys:  # fixed order: deterministic choices
            if k in self.free:
                self.free_by_action[k.action].append(k)
        self.reserved: set[EventKey] = set()  # keys some query's words match
        self.capacity = len(self.query_pool)

    # -- helpers

    def _uniform(self, low: float, high: float) -> float:
        return float(low + (high - low) * self.rng.random())

    def _choice(self, items: Sequence[Any]) -> Any:
        return items[int(self.rng.integers(len(items)))]

    def _slots(self, duration_s: float) -> list[tuple[float, float]]:
        """Event windows on the 2 s grid: 4-20 s long, 0-6 s apart."""
        grid = CLIP_SECONDS
        t = grid * float(self.rng.integers(0, 3))
        t = min(t, duration_s - MIN_EVENT_S)
        slots = []
        while duration_s - t >= MIN_EVENT_S - 1e-9:
            steps = int(self.rng.integers(round(MIN_EVENT_S / grid), round(MAX_EVENT_S / grid) + 1))
            length = min(grid * steps, duration_s - t)
            slots.append((t, t + length))
            t += length + grid * float(self.rng.integers(0, round(MAX_GAP_S / grid) + 1))
        return slots

    # -- query targets and reservations

    def _reserve_wording(self, key: EventKey) -> tuple[tuple[str, ...], bool]:
        """Choose which attributes (and target colour) the query names, and reserve every
        key the wording matches. Falls back to the full wording, which always fits."""
        entity = Entity(key.shape, key.colour, key.size)
        weights = np.array([w for _, w in NAMINGS])
        preferred = NAMINGS[int(self.rng.choice(len(NAMINGS), p=weights / weights.sum()))][0]
        target_named = key.action != "change_colour" or bool(self.rng.random() < TARGET_NAMED_P)
        full = ATTRIBUTES
        for named, with_target in ((preferred, target_named), (full, target_named), (full, True)):
            covered = expand_query(named, entity, key.action, key.target if with_target else "")
            if all(k == key or k in self.free for k in covered):
                self._take(covered)
                return named, with_target
        raise VtrError(f"internal: the key {key} was not free")  # _pick_target checked it

    def _take(self, keys: Iterable[EventKey]) -> None:
        for k in keys:
            self.free.discard(k)
            self.reserved.add(k)
            if k in self.query_pool:
                self.free_by_action[k.action].remove(k)

    def _pick_target(self, claimed: set[str]) -> _Target | None:
        """A free query-pool key for a new object whose colours are not yet `claimed`."""
        options = {
            a: [k for k in keys if k.colour not in claimed and k.target not in claimed]
            for a, keys in self.free_by_action.items()
        }
        actions = [a for a in ACTIONS if options[a]]
        if not actions:
            return None
        # Actions in proportion to the square root of their free keys: change_colour (six
        # targets per object) is not swamped by, nor does it swamp, the others, and the
        # mix stays about the same from the first video of a corpus to the last.
        weights = np.sqrt([len(options[a]) for a in actions])
        action = actions[int(self.rng.choice(len(actions), p=weights / weights.sum()))]
        key = self._choice(options[action])
        named, target_named = self._reserve_wording(key)
        return _Target(key, named, target_named)

    # -- events

    def _event_params(
        self, action: str, base: _Base, start_s: float, end_s: float
    ) -> dict[str, Any] | None:
        """Random magnitudes for `action` from state `base`; None when there is no room."""
        lo_x, hi_x = margin_x(self.aspect), 1.0 - margin_x(self.aspect)
        lo_y, hi_y = margin_y(), 1.0 - margin_y()
        if action in MOVES:
            sx, sy = MOVES[action]
            if sx:
                room = (hi_x - base.x) if sx > 0 else (base.x - lo_x)
                low, high = MOVE_X
            else:
                room = (hi_y - base.y) if sy > 0 else (base.y - lo_y)
                low, high = MOVE_Y
            if room < low:
                return None
            d = self._uniform(low, min(high, room))
            return {"dx": sx * d, "dy": sy * d}
        if action == "bounce":
            room = base.y - lo_y
            if room < HOP[0]:
                return None
            hops = max(1, round((end_s - start_s) / HOP_SECONDS))
            return {"hops": hops, "hop_height": self._uniform(HOP[0], min(HOP[1], room))}
        if action == "spin":
            speed = self._uniform(*SPIN_DEG_PER_S)
            return {"turns": round(speed * (end_s - start_s) / 360.0, 3)}
        return {}

    def _distractor(
        self,
        bases: list[_Base],
        objects: list[SceneObject],
        locked: set[int],
        owned: set[str],
        slot: tuple[float, float],
    ) -> Event | None:
        """A random shared-pool event, or None if none fits. A `locked` object (its query
        event is still to come) may only spin or bounce, which keep its attributes and
        its place, so its query event still happens as planned."""
        by_action: dict[str, list[tuple[int, str]]] = {}
        for i, (base, obj) in enumerate(zip(bases, objects, strict=True)):
            entity = base.entity(obj.shape)
            for action, target in actions_for(entity):
                if (action == "appear") == base.visible:
                    continue  # an invisible object can only appear
                if i in locked and action not in ("spin", "bounce"):
                    continue
                if action == "change_colour" and target in owned:
                    continue
                key = EventKey(entity.shape, entity.colour, entity.size, action, target)
                if key not in self.shared_pool or key in self.reserved:
                    continue  # would match a query (or could in a later video)
                by_action.setdefault(action, []).append((i, target))
        actions = [a for a in ACTIONS if a in by_action]
        for a in self.rng.permutation(len(actions)):  # resample until one has room
            action = actions[int(a)]
            i, target = self._choice(by_action[action])
            params = self._event_params(action, bases[i], *slot)
            if params is not None:
                entity = bases[i].entity(objects[i].shape)
                return Event(i, action, slot[0], slot[1], entity, target, **params)
        return None

    # -- scenes

    def _place(self, boxes: list[tuple[float, float, float, float]]) -> list[tuple[float, float]]:
        """Centres inside each (x_lo, x_hi, y_lo, y_hi) box, kept apart where possible."""
        placed: list[tuple[float, float]] = []
        gap = 2.0 * SIZE_RADIUS["large"]  # in height units
        for x_lo, x_hi, y_lo, y_hi in boxes:
            best, best_d = (x_lo, y_lo), -1.0
            for _ in range(60):
                x, y = self._uniform(x_lo, x_hi), self._uniform(y_lo, y_hi)
                d = min(
                    (math.hypot((x - px) * self.aspect, y - py) for px, py in placed),
                    default=math.inf,
                )
                if d > best_d:
                    best, best_d = (x, y), d
                if d >= gap:
                    break
            placed.append(best)
        return placed

    def _target_box(
        self, key: EventKey, slot: tuple[float, float]
    ) -> tuple[tuple[float, float, float, float], dict[str, Any]]:
        """Where a target object may start so its query event has room, and its params."""
        lo_x, hi_x = margin_x(self.aspect), 1.0 - margin_x(self.aspect)
        lo_y, hi_y = margin_y(), 1.0 - margin_y()
        box = [lo_x, hi_x, lo_y, hi_y]
        params: dict[str, Any] = {}
        if key.action in MOVES:
            sx, sy = MOVES[key.action]
            low, high = MOVE_X if sx else MOVE_Y
            d = self._uniform(low, high)
            params = {"dx": sx * d, "dy": sy * d}
            if sx > 0:
                box[1] = hi_x - d
            elif sx < 0:
                box[0] = lo_x + d
            elif sy > 0:
                box[3] = hi_y - d
            else:
                box[2] = lo_y + d
        elif key.action == "bounce":
            h = self._uniform(*HOP)
            params = {
                "hops": max(1, round((slot[1] - slot[0]) / HOP_SECONDS)),
                "hop_height": h,
            }
            box[2] = lo_y + h
        elif key.action == "spin":
            speed = self._uniform(*SPIN_DEG_PER_S)
            params = {"turns": round(speed * (slot[1] - slot[0]) / 360.0, 3)}
        return (box[0], box[1], box[2], box[3]), params

    def _new_object(self, entity: Entity, x: float, y: float, visible: bool) -> SceneObject:
        return SceneObject(
            shape=entity.shape,
            colour=entity.colour,
            size=entity.size,
            x=round(x, 4),
            y=round(y, 4),
            visible=visible,
            angle_deg=round(self._uniform(0.0, 360.0), 1) if entity.shape in SPINNABLE else 0.0,
            wobble=round(self._uniform(0.4, 1.0) * WOBBLE_MAX, 4),
            wobble_period_s=round(self._uniform(3.0, 6.0), 2),
            wobble_phase=round(self._uniform(0.0, 2.0 * math.pi), 3),
        )

    def plan_video(self, vid: str) -> tuple[VideoPlan, list[tuple[int, _Target]]]:
        """One video and its queries as (event index, target)."""
        rng, grid = self.rng, CLIP_SECONDS
        duration = grid * float(
            rng.integers(
                math.ceil(self.min_seconds / grid), math.floor(self.max_seconds / grid) + 1
            )
        )
        slots = self._slots(duration)
        n_queries = min(len(slots), max(1, round(duration / 60.0 * self.queries_per_minute)))
        claimed: set[str] = set()
        targets: list[_Target] = []
        for _ in range(n_queries):
            target = self._pick_target(claimed)
            if target is None:
                break
            targets.append(target)
            claimed |= {target.key.colour, target.key.target} - {""}
        if not targets:
            raise InputError(
                f"the world has no unique query left for video {vid}: its vocabulary allows "
                f"about {self.capacity} queries per corpus; ask for fewer videos or shorter ones"
            )
        query_slots = sorted(int(s) for s in rng.choice(len(slots), len(targets), replace=False))

        # scene: one object per target, then extra objects in unclaimed colours
        entities: list[Entity] = []
        boxes, visible, target_params = [], [], []
        for target, s in zip(targets, query_slots, strict=True):
            k = target.key
            entities.append(Entity(k.shape, k.colour, k.size))
            box, params = self._target_box(k, slots[s])
            boxes.append(box)
            target_params.append(params)
            visible.append(k.action != "appear")
        spare = [c for c in COLOURS if c not in claimed]
        n_objects = max(len(targets), int(rng.integers(3, 6)))
        for i in rng.permutation(len(spare))[: n_objects - len(targets)]:
            entities.append(Entity(self._choice(SHAPES), spare[int(i)], self._choice(SIZES)))
            boxes.append(
                (margin_x(self.aspect), 1 - margin_x(self.aspect), margin_y(), 1 - margin_y())
            )
            visible.append(bool(rng.random() >= 0.15))
        owned = claimed | {e.colour for e in entities}
        order = rng.permutation(len(entities))  # place constrained objects in random order
        centres: list[tuple[float, float]] = [(0.0, 0.0)] * len(entities)
        for i, centre in zip(order, self._place([boxes[int(i)] for i in order]), strict=True):
            centres[int(i)] = centre
        objects = [
            self._new_object(e, x, y, v)
            for e, (x, y), v in zip(entities, centres, visible, strict=True)
        ]
        background = self._choice(BACKGROUNDS)

        # timeline: query events in their slots, distractors elsewhere
        bases = [_Base(o.x, o.y, o.size, o.colour, o.visible, o.angle_deg) for o in objects]
        locked = set(range(len(targets)))
        slot_target = {s: j for j, s in enumerate(query_slots)}
        events: list[Event] = []
        picks: list[tuple[int, _Target]] = []
        for s, slot in enumerate(slots):
            if s in slot_target:
                j = slot_target[s]
                k = targets[j].key
                ev = Event(j, k.action, slot[0], slot[1], entities[j], k.target, **target_params[j])
                locked.discard(j)
                picks.append((len(events), targets[j]))
            else:
                maybe = self._distractor(bases, objects, locked, owned, slot)
                if maybe is None:
                    continue
                ev = maybe
            events.append(ev)
            bases[ev.object_index] = _after(bases[ev.object_index], ev)
            if ev.target_colour:
                owned.add(ev.target_colour)
        video = VideoPlan(
            vid=vid,
            duration_s=duration,
            fps=self.fps,
            width=self.width,
            height=self.height,
            background=background,
            objects=tuple(objects),
            events=tuple(events),
        )
        return video, picks


def check_unique(corpus: CorpusPlan) -> None:
    """Raise VtrError unless every query matches exactly its own event in the corpus."""
    by_vid = {v.vid: v for v in corpus.videos}
    by_action: dict[str, list[tuple[str, int, Event]]] = {}
    for v in corpus.videos:
        for i, ev in enumerate(v.events):
            by_action.setdefault(ev.action, []).append((v.vid, i, ev))
    for q in corpus.queries:
        hits = [(vid, i) for vid, i, ev in by_action.get(q.action, []) if q.matches(ev)]
        if hits != [(q.vid, q.event_index)]:
            raise VtrError(f"internal: query {q.qid} {q.text!r} matches events {hits}")
        ev = by_vid[q.vid].events[q.event_index]
        if (ev.start_s, ev.end_s) != q.window:
            raise VtrError(f"internal: query {q.qid} window differs from its event")


def _check_arguments(
    n_videos: int, min_seconds: float, max_seconds: float, fps: float, size: tuple[int, int]
) -> None:
    if n_videos < 1:
        raise InputError(f"need at least one video, got {n_videos}")
    if not MIN_EVENT_S <= min_seconds <= max_seconds:
        raise InputError(
            f"video lengths must satisfy {MIN_EVENT_S:g} <= min ({min_seconds:g}) "
            f"<= max ({max_seconds:g}) seconds"
        )
    if math.floor(max_seconds / CLIP_SECONDS) < math.ceil(min_seconds / CLIP_SECONDS):
        raise InputError(f"no multiple of {CLIP_SECONDS:g} s lies in {min_seconds}..{max_seconds}")
    if not 1.0 <= fps <= 60.0:
        raise InputError(f"fps must lie in 1..60, got {fps:g}")
    width, height = size
    if width % 2 or height % 2 or not (32 <= width <= 1920 and 32 <= height <= 1080):
        raise InputError(
            f"frame size must be even and within 32x32..1920x1080, got {width}x{height}"
        )
    if not 1.0 <= width / height <= 2.5:
        raise InputError(
            f"frame aspect ratio (width / height) must lie in 1..2.5, got {width}x{height}"
        )


def plan_corpus(
    n_videos: int,
    seed: int,
    *,
    min_seconds: float = 20.0,
    max_seconds: float = 180.0,
    fps: float = 8.0,
    size: tuple[int, int] = (128, 96),
    heldout_phrasing: bool = False,
    queries_per_minute: float = 1.2,
    first_qid: int = 0,
) -> CorpusPlan:
    """The world of a corpus (videos, events, queries) without rendering anything.

    Deterministic per `seed`. The world (videos, events, windows) does not depend on
    `heldout_phrasing`; only the query texts do. `size` is (width, height) in pixels.
    Query ids count up from `first_qid` (distinct ranges let corpora be combined).
    """
    _check_arguments(n_videos, min_seconds, max_seconds, fps, size)
    if first_qid < 0:
        raise InputError(f"first_qid must be >= 0, got {first_qid}")
    if queries_per_minute <= 0:
        raise InputError(f"queries_per_minute must be positive, got {queries_per_minute:g}")
    world_seq, phrase_seq = np.random.SeedSequence(seed).spawn(2)
    planner = _Planner(
        np.random.default_rng(world_seq), min_seconds, max_seconds, fps, size, queries_per_minute
    )
    phrase_rng = np.random.default_rng(phrase_seq)
    videos: list[VideoPlan] = []
    queries: list[SynthQuery] = []
    for index in range(n_videos):
        video, picks = planner.plan_video(f"s{seed}-v{index:04d}")
        videos.append(video)
        for event_index, target in picks:
            ev = video.events[event_index]
            named = {a: ev.entity.value(a) for a in target.named}
            target_colour = ev.target_colour if target.target_named else ""
            text, template = phrase_query(
                named, ev.action, target_colour or None, phrase_rng, heldout_phrasing
            )
            clip_ids, scores = clip_saliency(ev.action, ev.start_s, ev.end_s)
            queries.append(
                SynthQuery(
                    qid=first_qid + len(queries),
                    vid=video.vid,
                    text=text,
                    template=template,
                    event_index=event_index,
                    named=target.named,
                    entity=ev.entity,
                    action=ev.action,
                    target_colour=target_colour,
                    window=(ev.start_s, ev.end_s),
                    relevant_clip_ids=clip_ids,
                    saliency_scores=scores,
                )
            )
    corpus = CorpusPlan(
        seed=seed,
        videos=tuple(videos),
        queries=tuple(queries),
        heldout_phrasing=heldout_phrasing,
        settings={
            "n_videos": n_videos,
            "min_seconds": min_seconds,
            "max_seconds": max_seconds,
            "fps": fps,
            "size": [size[0], size[1]],
            "queries_per_minute": queries_per_minute,
            "first_qid": first_qid,
        },
    )
    for video in corpus.videos:
        Timeline(video)  # raises on an inconsistent plan
    check_unique(corpus)
    return corpus


# --- (de)serialisation ----------------------------------------------------------------


def _colour(values: Sequence[Any]) -> Colour:
    r, g, b = (int(v) for v in values)
    return (r, g, b)


def _entity(d: Mapping[str, Any]) -> Entity:
    return Entity(str(d["shape"]), str(d["colour"]), str(d["size"]))


def video_from_dict(d: Mapping[str, Any]) -> VideoPlan:
    """A `VideoPlan` from `asdict`-style data (lists where tuples were)."""
    try:
        bg = dict(d["background"])
        background = Background(
            name=str(bg["name"]),
            kind=bg["kind"],
            colour_a=_colour(bg["colour_a"]),
            colour_b=_colour(bg["colour_b"]),
            vertical=bool(bg["vertical"]),
            period=float(bg["period"]),
            drift=float(bg["drift"]),
        )
        objects = tuple(SceneObject(**o) for o in d["objects"])
        events = tuple(Event(**{**e, "entity": _entity(e["entity"])}) for e in d["events"])
        return VideoPlan(
            vid=str(d["vid"]),
            duration_s=float(d["duration_s"]),
            fps=float(d["fps"]),
            width=int(d["width"]),
            height=int(d["height"]),
            background=background,
            objects=objects,
            events=events,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"not a synthetic video plan: {e}") from e


def corpus_from_dict(d: Mapping[str, Any]) -> CorpusPlan:
    """A `CorpusPlan` from `CorpusPlan.to_dict()` data (e.g. a corpus's world.json)."""
    try:
        queries = tuple(
            SynthQuery(
                qid=int(q["qid"]),
                vid=str(q["vid"]),
                text=str(q["text"]),
                template=str(q["template"]),
                event_index=int(q["event_index"]),
                named=tuple(q["named"]),
                entity=_entity(q["entity"]),
                action=str(q["action"]),
                target_colour=str(q["target_colour"]),
                window=(float(q["window"][0]), float(q["window"][1])),
                relevant_clip_ids=tuple(int(i) for i in q["relevant_clip_ids"]),
                saliency_scores=tuple(
                    (int(s[0]), int(s[1]), int(s[2])) for s in q["saliency_scores"]
                ),
            )
            for q in d["queries"]
        )
        return CorpusPlan(
            seed=int(d["seed"]),
            videos=tuple(video_from_dict(v) for v in d["videos"]),
            queries=queries,
            heldout_phrasing=bool(d["heldout_phrasing"]),
            settings=dict(d["settings"]),
        )
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise InputError(f"not a synthetic corpus description: {e}") from e
