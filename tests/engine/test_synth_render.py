"""Rendered synthetic videos: they decode with the planned length, the pixels do what the
events say (measured on decoded frames: colour masks, centroids, areas), frames are
deterministic, and `generate_corpus` writes loadable annotations and world files."""

import json
from pathlib import Path

import av
import numpy as np
import pytest

from engine.errors import ConflictError, InputError
from engine.synth import generate_corpus, load_world, plan_corpus, render_video
from engine.synth.world import (
    BACKGROUNDS,
    COLOURS,
    Entity,
    Event,
    SceneObject,
    Timeline,
    VideoPlan,
)
from localize.annotations import load_qvhighlights, query_to_dict

W, H, FPS = 128, 96, 8.0


def decode(path: Path) -> tuple[list[np.ndarray], float]:
    """Every frame (H, W, 3) uint8 RGB and the container's duration (s)."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        duration = (container.duration or 0) / 1_000_000
    return frames, duration


def mask(frame: np.ndarray, colour: str, tolerance: float = 45.0) -> np.ndarray:
    """Pixels within `tolerance` (RGB distance) of a world colour: (H, W) bool."""
    diff = frame.astype(np.float32) - np.array(COLOURS[colour], np.float32)
    return np.sqrt((diff**2).sum(axis=-1)) < tolerance


def centroid(m: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(m)
    return float(xs.mean()) + 0.5, float(ys.mean()) + 0.5


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def first(ev: Event) -> int:
    """Index of the event's first frame."""
    return round(ev.start_s * FPS)


def last(ev: Event) -> int:
    """Index of the event's last frame (still inside it)."""
    return round(ev.end_s * FPS) - 1


def e(shape: str, colour: str, size: str) -> Entity:
    return Entity(shape, colour, size)


# One object per action, each in its own colour; events one after another.
OBJECTS = (
    SceneObject("circle", "red", "small", 0.8, 0.35, wobble=0.01),
    SceneObject("square", "green", "small", 0.2, 0.3),
    SceneObject("ring", "blue", "large", 0.45, 0.75),
    SceneObject("triangle", "yellow", "large", 0.18, 0.72),
    SceneObject("star", "purple", "large", 0.8, 0.72, visible=False),
    SceneObject("circle", "white", "small", 0.66, 0.5),
)
EVENTS = (
    Event(0, "move_left", 0.0, 4.0, e("circle", "red", "small"), dx=-0.3),
    Event(1, "grow", 4.0, 8.0, e("square", "green", "small")),
    Event(2, "change_colour", 8.0, 12.0, e("ring", "blue", "large"), "orange"),
    Event(3, "spin", 12.0, 16.0, e("triangle", "yellow", "large"), turns=1 / 3),
    Event(4, "appear", 16.0, 20.0, e("star", "purple", "large")),
    Event(5, "bounce", 20.0, 24.0, e("circle", "white", "small"), hops=2, hop_height=0.2),
    Event(0, "move_up", 24.0, 28.0, e("circle", "red", "small"), dy=-0.1),
    Event(1, "shrink", 28.0, 32.0, e("square", "green", "large")),
    Event(4, "disappear", 34.0, 38.0, e("star", "purple", "large")),
)
HAND_MADE = VideoPlan("hand", 40.0, FPS, W, H, BACKGROUNDS[4], OBJECTS, EVENTS)


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    path = render_video(HAND_MADE, tmp_path_factory.mktemp("hand") / "hand.mp4")
    frames, duration = decode(path)
    assert len(frames) == HAND_MADE.n_frames == 320
    assert duration == pytest.approx(40.0, abs=0.01)
    assert frames[0].shape == (H, W, 3)
    return frames


def test_move_left_moves_the_pixels_left(hand_made: list[np.ndarray]) -> None:
    ev = EVENTS[0]
    (x0, y0), (x1, y1) = (centroid(mask(hand_made[i], "red")) for i in (first(ev), last(ev)))
    assert x0 - x1 > 0.27 * W  # planned: 0.3 of the width
    assert abs(y1 - y0) < 3


def test_move_up_moves_the_pixels_up(hand_made: list[np.ndarray]) -> None:
    ev = EVENTS[6]
    (x0, y0), (x1, y1) = (centroid(mask(hand_made[i], "red")) for i in (first(ev), last(ev)))
    assert y0 - y1 > 0.08 * H and abs(x1 - x0) < 3


def test_grow_and_shrink_change_the_area(hand_made: list[np.ndarray]) -> None:
    grow, shrink = EVENTS[1], EVENTS[7]
    small, large = (mask(hand_made[i], "green").sum() for i in (first(grow), last(grow)))
    assert large / small > 2.5  # radius 0.09 -> 0.16 of the height: area x3.2
    before, after = (mask(hand_made[i], "green").sum() for i in (first(shrink), last(shrink)))
    assert before / after > 2.5
    assert (
        np.hypot(
            *np.subtract(
                centroid(mask(hand_made[first(grow)], "green")),
                centroid(mask(hand_made[last(grow)], "green")),
            )
        )
        < 2
    )


def test_change_colour_wipes_to_the_new_colour(hand_made: list[np.ndarray]) -> None:
    ev = EVENTS[2]
    start, middle, end = (hand_made[i] for i in (first(ev), (first(ev) + last(ev)) // 2, last(ev)))
    assert mask(start, "blue").sum() > 200 and mask(start, "orange").sum() == 0
    blue_mid, orange_mid = mask(middle, "blue"), mask(middle, "orange")
    assert blue_mid.sum() > 50 and orange_mid.sum() > 50
    assert centroid(orange_mid)[0] < centroid(blue_mid)[0]  # wiped in from the left
    assert mask(end, "orange").sum() > 0.9 * mask(start, "blue").sum()
    assert mask(end, "blue").sum() < 0.05 * mask(start, "blue").sum()
    assert mask(hand_made[-1], "blue").sum() == 0  # for good


def test_spin_turns_the_shape_in_place(hand_made: list[np.ndarray]) -> None:
    ev = EVENTS[3]
    start, middle = mask(hand_made[first(ev)], "yellow"), mask(hand_made[first(ev) + 16], "yellow")
    end = mask(hand_made[round(ev.end_s * FPS)], "yellow")  # a third of a turn: as at the start
    assert iou(start, middle) < 0.6  # half way: the triangle points down
    assert iou(start, end) > 0.8
    assert np.hypot(*np.subtract(centroid(start), centroid(middle))) < 2
    assert abs(int(start.sum()) - int(middle.sum())) < 0.1 * start.sum()


def test_appear_and_disappear(hand_made: list[np.ndarray]) -> None:
    appear, disappear = EVENTS[4], EVENTS[8]
    assert mask(hand_made[first(appear)], "purple").sum() == 0
    assert mask(hand_made[first(appear) - 1], "purple").sum() == 0
    shown = mask(hand_made[last(appear) + 1], "purple").sum()
    assert shown > 300  # a large star
    assert mask(hand_made[last(disappear) + 1], "purple").sum() == 0
    assert mask(hand_made[first(disappear)], "purple").sum() == pytest.approx(shown, rel=0.1)


def test_bounce_goes_up_and_comes_back(hand_made: list[np.ndarray]) -> None:
    ev = EVENTS[5]
    ys = [centroid(mask(hand_made[i], "white"))[1] for i in range(first(ev), last(ev) + 2)]
    assert ys[0] - min(ys) > 0.15 * H  # planned hop: 0.2 of the height
    assert abs(ys[-1] - ys[0]) < 1  # back down once the event is over
    top = int(np.argmin(ys))
    assert 0 < top < len(ys) - 1


def test_frames_change_between_events(hand_made: list[np.ndarray]) -> None:
    gap = hand_made[round(32 * FPS) : round(34 * FPS)]  # no event from 32 to 34 s
    half_second = round(FPS / 2)
    pairs = zip(gap, gap[half_second:], strict=False)
    assert all(np.abs(a.astype(int) - b.astype(int)).max() > 20 for a, b in pairs)


def test_generated_video_matches_its_timeline(tmp_path: Path) -> None:
    """Objects stand where the world says, at the start and end of every event."""
    corpus = plan_corpus(2, seed=21, min_seconds=30, max_seconds=40)
    video = corpus.videos[0]
    frames, _ = decode(render_video(video, tmp_path / "v.mp4"))
    timeline = Timeline(video)
    checked = 0
    for ev in video.events:
        for k in (first(ev), last(ev)):
            s = timeline.state(ev.object_index, k / FPS)
            if s.alpha < 0.99 or 0.0 < s.wipe < 1.0:
                continue  # fading or half recoloured: no single-colour mask
            m = mask(frames[k], s.colour)
            assert m.sum() > 50
            x, y = centroid(m)
            assert abs(x - s.x * W) < 2.0 and abs(y - s.y * H) < 2.0, (ev, k)
            checked += 1
    assert checked >= 2


def test_same_plan_same_bytes(tmp_path: Path) -> None:
    video = plan_corpus(1, seed=2, min_seconds=8, max_seconds=8).videos[0]
    a = render_video(video, tmp_path / "a.mp4").read_bytes()
    b = render_video(video, tmp_path / "b.mp4").read_bytes()
    assert a == b


def test_inconsistent_plan_writes_nothing(tmp_path: Path) -> None:
    bad = VideoPlan(
        "bad",
        8.0,
        FPS,
        W,
        H,
        BACKGROUNDS[0],
        (OBJECTS[0],),
        (Event(0, "shrink", 0.0, 4.0, e("circle", "red", "small")),),
    )
    with pytest.raises(InputError, match="not possible"):
        render_video(bad, tmp_path / "bad.mp4")
    assert list(tmp_path.iterdir()) == []


def test_generate_corpus_writes_videos_annotations_and_world(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    manifest = generate_corpus(out, 3, seed=8, min_seconds=8, max_seconds=12)
    assert [p.name for p in sorted((out / "videos").iterdir())] == [
        f"{v.vid}.mp4" for v in manifest.plan.videos
    ]
    for file in manifest.videos:
        frames, duration = decode(file.path)
        assert duration == pytest.approx(file.duration_s, abs=0.01)
        assert len(frames) == round(file.duration_s * FPS)
    loaded = load_qvhighlights(manifest.annotations_path)
    lines = manifest.annotations_path.read_text().splitlines()
    assert len(loaded) == len(lines) == len(manifest.queries) >= 3
    assert [q.query for q in loaded] == [q.text for q in manifest.queries]
    for query, line in zip(loaded, lines, strict=True):
        assert json.dumps(query_to_dict(query)) == line  # the reference writer's bytes
        assert query.vid in {v.vid for v in manifest.videos}
        assert all(0 <= s < e <= query.duration_s for s, e in query.windows)  # type: ignore[operator]
    assert load_world(manifest.world_path) == manifest.plan
    assert manifest.seconds_per_video_minute > 0
    with pytest.raises(ConflictError, match="already holds"):
        generate_corpus(out, 3, seed=8, min_seconds=8, max_seconds=12)
    again = generate_corpus(out, 2, seed=9, min_seconds=8, max_seconds=12, overwrite=True)
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["s9-v0000.mp4", "s9-v0001.mp4"]
    assert {q.vid for q in load_qvhighlights(again.annotations_path)} == {"s9-v0000", "s9-v0001"}


def test_workers_give_the_same_corpus(tmp_path: Path) -> None:
    one = generate_corpus(tmp_path / "one", 2, seed=5, min_seconds=8, max_seconds=10)
    two = generate_corpus(tmp_path / "two", 2, seed=5, min_seconds=8, max_seconds=10, workers=2)
    assert one.annotations_path.read_bytes() == two.annotations_path.read_bytes()
    for a, b in zip(one.videos, two.videos, strict=True):
        assert a.path.read_bytes() == b.path.read_bytes()
