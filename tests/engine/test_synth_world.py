"""The synthetic world's plans: determinism, exact uniqueness of every query (checked by
brute force, independently of the planner), valid windows and saliency, phrasing sets,
and the timeline's semantics."""

import math
import re
from dataclasses import replace

import pytest

from engine.errors import InputError
from engine.synth import phrasing
from engine.synth.world import (
    ACTIONS,
    BACKGROUNDS,
    COLOURS,
    SHAPES,
    SIZE_RADIUS,
    SIZES,
    CorpusPlan,
    Entity,
    Event,
    SceneObject,
    Timeline,
    VideoPlan,
    annotation_rows,
    clip_saliency,
    corpus_from_dict,
    plan_corpus,
)


@pytest.fixture(scope="module")
def big() -> CorpusPlan:
    """A corpus as large as the held-out evaluation one (plans only: fast)."""
    return plan_corpus(220, seed=11)


@pytest.fixture(scope="module")
def small() -> CorpusPlan:
    return plan_corpus(12, seed=7, min_seconds=20, max_seconds=90)


def _replayed_attributes(video: VideoPlan) -> list[dict[str, str]]:
    """Each event's object attributes at its start, replayed here from the objects'
    initial attributes and the attribute-changing actions (not from the planner)."""
    current = [{"shape": o.shape, "colour": o.colour, "size": o.size} for o in video.objects]
    out = []
    for ev in video.events:
        attrs = current[ev.object_index]
        out.append(dict(attrs))
        if ev.action == "grow":
            attrs["size"] = "large"
        elif ev.action == "shrink":
            attrs["size"] = "small"
        elif ev.action == "change_colour":
            attrs["colour"] = ev.target_colour
    return out


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _says(text: str, words: tuple[str, ...]) -> bool:
    """Whether one of `words` (possibly several tokens long) occurs as whole tokens."""
    padded = " " + " ".join(_tokens(text)) + " "
    return any(f" {w} " in padded for w in words)


def test_same_seed_same_world_and_annotations() -> None:
    a = plan_corpus(10, seed=3, min_seconds=20, max_seconds=60)
    b = plan_corpus(10, seed=3, min_seconds=20, max_seconds=60)
    assert a == b
    assert annotation_rows(a) == annotation_rows(b)
    c = plan_corpus(10, seed=4, min_seconds=20, max_seconds=60)
    assert [q.text for q in c.queries] != [q.text for q in a.queries]
    assert [v.events for v in c.videos] != [v.events for v in a.videos]
    shifted = plan_corpus(10, seed=3, min_seconds=20, max_seconds=60, first_qid=500)
    assert [q.qid for q in shifted.queries] == [500 + q.qid for q in a.queries]
    assert [q.text for q in shifted.queries] == [q.text for q in a.queries]


def test_every_query_matches_exactly_its_own_event(big: CorpusPlan) -> None:
    events = []  # (vid, event index, replayed attributes, event)
    for video in big.videos:
        replayed = _replayed_attributes(video)
        for i, (attrs, ev) in enumerate(zip(replayed, video.events, strict=True)):
            # the planner's stated attributes are the true ones
            assert (ev.entity.shape, ev.entity.colour, ev.entity.size) == (
                attrs["shape"],
                attrs["colour"],
                attrs["size"],
            )
            events.append((video.vid, i, attrs, ev))
    assert len(big.queries) >= len(big.videos)  # at least one query per video
    for q in big.queries:
        said = {a: q.entity.value(a) for a in q.named}
        hits = [
            (vid, i)
            for vid, i, attrs, ev in events
            if ev.action == q.action
            and (not q.target_colour or ev.target_colour == q.target_colour)
            and all(attrs[a] == value for a, value in said.items())
        ]
        assert hits == [(q.vid, q.event_index)], q.text
        video = next(v for v in big.videos if v.vid == q.vid)
        ev = video.events[q.event_index]
        assert q.window == (ev.start_s, ev.end_s)


def test_query_text_names_what_the_query_claims(big: CorpusPlan) -> None:
    size_words = tuple(w for ws in phrasing.SIZE_WORDS.values() for w in ws)
    for q in big.queries:
        assert "shape" in q.named
        for attribute in q.named:
            assert _says(q.text, phrasing.attribute_words(attribute, q.entity.value(attribute)))
        if "size" not in q.named:
            assert not _says(q.text, size_words), q.text
        colours_said = {c for c in COLOURS if _says(q.text, phrasing.attribute_words("colour", c))}
        expected = ({q.entity.colour} if "colour" in q.named else set()) | (
            {q.target_colour} if q.target_colour else set()
        )
        assert colours_said == expected, q.text
        verbs = phrasing.verb_phrases(q.action, bool(q.target_colour), heldout=False)
        pattern = [v.format(target=t) for v in verbs for t in _target_words(q.target_colour)]
        assert any(p in q.text for p in pattern), q.text


def _target_words(colour: str) -> tuple[str, ...]:
    return phrasing.attribute_words("colour", colour) if colour else ("",)


def test_the_mix_uses_the_whole_vocabulary(big: CorpusPlan) -> None:
    assert {q.action for q in big.queries} == set(ACTIONS)
    events = [ev for v in big.videos for ev in v.events]
    assert {ev.action for ev in events} == set(ACTIONS)
    assert {ev.entity.shape for ev in events} == set(SHAPES)
    assert {ev.entity.colour for ev in events} == set(COLOURS)
    assert {v.background.name for v in big.videos} == {b.name for b in BACKGROUNDS}
    # shared objects and actions: a query's object does other things in other videos,
    # and most event keys of distractors recur across videos
    keys = [ev.key for ev in events]
    assert len(set(keys)) < len(keys) * 0.7
    assert max(len({q.action for q in big.queries if q.entity == e}) for e in _entities(big)) > 1


def _entities(corpus: CorpusPlan) -> set[Entity]:
    return {q.entity for q in corpus.queries}


def test_windows_durations_and_saliency_are_valid(big: CorpusPlan) -> None:
    for video in big.videos:
        assert 20 <= video.duration_s <= 180 and video.duration_s % 2 == 0
        previous_end = 0.0
        for ev in video.events:
            assert ev.start_s >= previous_end  # one event at a time
            assert ev.start_s % 2 == 0 and ev.end_s % 2 == 0
            assert 4 <= ev.end_s - ev.start_s <= 20
            assert ev.end_s <= video.duration_s
            previous_end = ev.end_s
        Timeline(video)  # consistent
    for q, row in zip(big.queries, annotation_rows(big), strict=True):
        start, end = q.window
        assert row["relevant_windows"] == [[start, end]]
        assert row["relevant_clip_ids"] == list(range(int(start) // 2, int(end) // 2))
        assert len(row["saliency_scores"]) == len(row["relevant_clip_ids"])
        for scores in row["saliency_scores"]:
            assert len(scores) == 3 and all(0 <= s <= 4 for s in scores)
        assert max(max(s) for s in row["saliency_scores"]) == 4


def test_saliency_follows_how_much_of_the_event_a_clip_holds() -> None:
    ids, scores = clip_saliency("move_left", 10.0, 30.0)
    assert ids == tuple(range(5, 15))
    middle = [s[0] for s in scores]
    assert middle == middle[::-1]  # eased motion: symmetric, busiest in the middle
    assert middle[0] < middle[4] == 4
    ids, scores = clip_saliency("bounce", 4.0, 10.0)  # even pace: every clip alike
    assert ids == (2, 3, 4) and scores == ((4, 4, 4),) * 3
    ids, scores = clip_saliency("grow", 3.0, 7.0)  # off the grid: partial end clips
    assert ids == (1, 2, 3)
    assert scores[0][0] < scores[1][0] and scores[2][0] < scores[1][0]


def test_heldout_phrasing_changes_words_not_the_world() -> None:
    base = plan_corpus(15, seed=5, min_seconds=20, max_seconds=60)
    held = plan_corpus(15, seed=5, min_seconds=20, max_seconds=60, heldout_phrasing=True)
    assert held.videos == base.videos
    assert [q.window for q in held.queries] == [q.window for q in base.queries]
    assert all(q.template in phrasing.HELDOUT_TEMPLATES for q in held.queries)
    assert all(q.template in phrasing.DEFAULT_TEMPLATES for q in base.queries)
    default_verbs = {v for vs in phrasing.DEFAULT_VERBS.values() for v in vs}
    for q in held.queries:
        stem = q.template.split("{subject}")[0]
        assert q.text.startswith(stem)
        assert not any(v.split("{")[0] in q.text for v in default_verbs if len(v) > 8), q.text


def test_heldout_sets_are_disjoint_and_complete() -> None:
    assert not set(phrasing.DEFAULT_TEMPLATES) & set(phrasing.HELDOUT_TEMPLATES)
    default = {v for vs in phrasing.DEFAULT_VERBS.values() for v in vs}
    heldout = {v for vs in phrasing.HELDOUT_VERBS.values() for v in vs}
    assert not default & heldout
    for table in (phrasing.DEFAULT_VERBS, phrasing.HELDOUT_VERBS):
        assert set(table) == {*ACTIONS, "change_colour_any"}
        assert all("{target}" in v for v in table["change_colour"])
    assert set(phrasing.SHAPE_WORDS) == set(SHAPES)
    assert set(phrasing.COLOUR_WORDS) == set(COLOURS)
    assert set(phrasing.SIZE_WORDS) == set(SIZES)


def test_plan_round_trips_through_json_data(small: CorpusPlan) -> None:
    import json

    data = json.loads(json.dumps(small.to_dict()))
    assert corpus_from_dict(data) == small
    with pytest.raises(InputError, match="not a synthetic corpus"):
        corpus_from_dict({"seed": 1})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_seconds": 30, "max_seconds": 20}, "video lengths"),
        ({"min_seconds": 2, "max_seconds": 20}, "video lengths"),
        ({"size": (127, 96)}, "even"),
        ({"size": (96, 128)}, "aspect"),
        ({"fps": 0.5}, "fps"),
        ({"queries_per_minute": 0}, "queries_per_minute"),
        ({"first_qid": -1}, "first_qid"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        plan_corpus(2, seed=0, **kwargs)  # type: ignore[arg-type]


def test_too_many_videos_for_the_vocabulary_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="no unique query left"):
        plan_corpus(3000, seed=0, min_seconds=4, max_seconds=4)


# --- timeline semantics -----------------------------------------------------------------


def _video(objects: list[SceneObject], events: list[Event], duration_s: float = 20.0) -> VideoPlan:
    return VideoPlan("t", duration_s, 8.0, 128, 96, BACKGROUNDS[0], tuple(objects), tuple(events))


RED_SMALL = SceneObject("circle", "red", "small", 0.7, 0.5)


def test_timeline_follows_each_action() -> None:
    red = Entity("circle", "red", "small")
    events = [
        Event(0, "move_left", 2.0, 6.0, red, dx=-0.4),
        Event(0, "grow", 6.0, 10.0, red),
        Event(0, "change_colour", 10.0, 14.0, replace(red, size="large"), "blue"),
        Event(0, "disappear", 14.0, 18.0, Entity("circle", "blue", "large")),
    ]
    t = Timeline(_video([RED_SMALL], events))
    assert t.state(0, 2.0).x == pytest.approx(0.7)
    assert t.state(0, 4.0).x == pytest.approx(0.5)  # eased: half way at half time
    assert t.state(0, 6.0).x == pytest.approx(0.3)
    assert t.state(0, 4.0).active and not t.state(0, 1.0).active
    assert t.state(0, 6.0).radius == pytest.approx(SIZE_RADIUS["small"])
    assert t.state(0, 10.0).radius == pytest.approx(SIZE_RADIUS["large"])
    mid = t.state(0, 12.0)
    assert (mid.colour, mid.wipe_colour, mid.wipe) == ("red", "blue", pytest.approx(0.5))
    assert t.state(0, 14.0).colour == "blue" and t.state(0, 14.0).wipe_colour == ""
    assert t.state(0, 16.0).alpha == pytest.approx(0.5)
    assert t.state(0, 19.0).alpha == 0.0


def test_objects_keep_moving_outside_events() -> None:
    wobbly = replace(RED_SMALL, wobble=0.02, wobble_period_s=4.0)
    t = Timeline(_video([wobbly], []))
    xs = [t.state(0, s).x for s in (0.0, 1.0, 2.0)]
    ys = [t.state(0, s).y for s in (0.0, 1.0, 2.0)]
    assert max(xs) - min(xs) > 0.01 and max(ys) - min(ys) > 0.01
    assert math.hypot((xs[0] - 0.7) * 128 / 96, ys[0] - 0.5) == pytest.approx(0.02)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (Event(0, "grow", 2.0, 6.0, Entity("circle", "red", "large")), "says"),
        (Event(0, "shrink", 2.0, 6.0, Entity("circle", "red", "small")), "not possible"),
        (Event(0, "spin", 2.0, 6.0, Entity("circle", "red", "small"), turns=1.0), "not possible"),
        (Event(0, "appear", 2.0, 6.0, Entity("circle", "red", "small")), "appear while"),
        (Event(0, "move_right", 2.0, 6.0, Entity("circle", "red", "small"), dx=0.5), "frame"),
        (Event(0, "fly", 2.0, 6.0, Entity("circle", "red", "small")), "unknown action"),
        (Event(0, "grow", 18.0, 22.0, Entity("circle", "red", "small")), "outside"),
        (Event(1, "grow", 2.0, 6.0, Entity("circle", "red", "small")), "no object"),
    ],
)
def test_inconsistent_plans_are_refused(event: Event, message: str) -> None:
    with pytest.raises(InputError, match=message):
        Timeline(_video([RED_SMALL], [event]))


def test_overlapping_events_of_one_object_are_refused() -> None:
    red = Entity("circle", "red", "small")
    events = [Event(0, "bounce", 2.0, 8.0, red, hops=2, hop_height=0.1)]
    events.append(Event(0, "grow", 6.0, 10.0, red))
    with pytest.raises(InputError, match="overlaps"):
        Timeline(_video([RED_SMALL], events))
