"""Corpus evaluation of the full search on a collection with planted ground truth.

Ten 60 s videos (30 clips of 2 s) of random clip features, precomputed (`ingest_features`).
Video `vid{i}` carries query i's own sentence embedding in 6 clips [a, a + 6), a = 4 + 2i,
i.e. the GT window [2a, 2a + 12] s; `noise0..3` carry nothing. Hand-derived expectations:
- two stages (similarity localizer): each planted query's best moment is its GT window,
  in its GT video, ranked first;
- stage 1 only, global + action: the best moments are 4-clip action windows (stride 2)
  inside the 6-clip plant: IoU 8 / 12 = 0.67, a hit at IoU 0.5 and a miss at 0.7 at any
  rank; + entity: the 6 planted clips form one entity state, IoU 1;
- stage 1 only, global: every moment is a whole video, IoU 12 / 60 = 0.2 with a planted
  window (a miss), but the GT video still ranks first;
- a mislabelled query (query 0's text, GT = all of `noise0`) misses at rank 1 everywhere,
  its GT video is among the 10 videos of the ranking, and with whole-video moments its
  GT window is found exactly within the top 10;
- a query whose video is not in the collection is skipped and reported.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from api.cli.app import main
from api.corpus_eval import (
    LATENCY_KEYS,
    SKIP_NO_VIDEO,
    SKIP_NO_WINDOWS,
    CorpusEvalOptions,
    CorpusEvalResult,
    collection_vids,
    evaluate_collection,
    run_settings,
)
from api.search import MomentResult, SearchRequest, SearchService
from engine.config import Settings, load_settings
from engine.encoders import Encoder, create_encoder
from engine.errors import InputError
from index.catalog import Catalog
from index.ingest import FeatureVideo, ingest_features
from localize.annotations import (
    MomentQuery,
    load_predictions,
    load_qvhighlights,
    write_qvhighlights,
)

QUERIES = (
    "a small red circle slides to the left",
    "a blue square grows",
    "two green triangles spin",
    "the yellow star jumps up",
    "a white line fades out",
    "a purple dot bounces",
)
N_PLANTED = len(QUERIES)
SIX_OF_SEVEN = 85.71  # percent, TVR rounding of 6 / 7
ONE_OF_SEVEN = 14.29

World = tuple[Path, Settings, Catalog, list[MomentQuery]]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return create_encoder("tiny-random", "cpu")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, encoder: Encoder) -> World:
    root = tmp_path_factory.mktemp("corpus")
    config = root / "config.toml"
    config.write_text(
        '[encoder]\nname = "tiny-random"\ndevice = "cpu"\n[search]\ndefault_collection = "c"\n'
    )
    settings = load_settings(config)
    catalog = Catalog.initialise(settings.catalog_url)
    catalog.create_collection("c", "tiny-random")
    sentences = encoder.encode_text(list(QUERIES)).sentence  # (6, D)
    dim = sentences.shape[1]
    rng = np.random.default_rng(0)
    videos, gt = [], []
    for i, query in enumerate(QUERIES):
        clips = _unit(rng.standard_normal((30, dim)))  # (30, D)
        a = 4 + 2 * i
        clips[a : a + 6] = _unit(sentences[i] + 0.02 * rng.standard_normal((6, dim)))
        videos.append(FeatureVideo(f"/v/vid{i}.mp4", clips, 60.0))
        gt.append(MomentQuery(i, query, f"vid{i}", 60.0, [(2.0 * a, 2.0 * a + 12)], [], []))
    for j in range(4):
        videos.append(FeatureVideo(f"/v/noise{j}.mp4", _unit(rng.standard_normal((30, dim))), 60))
    gt.append(MomentQuery("mislabelled", QUERIES[0], "noise0", 60.0, [(0.0, 60.0)], [], []))
    gt.append(MomentQuery("gone", "a black cat sleeps", "absent", 60.0, [(0.0, 10.0)], [], []))
    assert len(ingest_features(catalog, settings, "c", videos).ready) == len(videos)
    annotations = root / "annotations.jsonl"
    write_qvhighlights(annotations, gt)
    return root, settings, catalog, gt


def _evaluate(
    world: World, encoder: Encoder, options: CorpusEvalOptions | None = None
) -> CorpusEvalResult:
    _, settings, catalog, gt = world

    def make_service(run: Settings, cat: Catalog) -> SearchService:
        return SearchService(run, cat, encoder_factory=lambda spec, device: encoder)

    return evaluate_collection(
        settings,
        catalog,
        gt,
        options,
        make_service=make_service,
    )


@pytest.fixture(scope="module")
def two_stage(world: World, encoder: Encoder) -> CorpusEvalResult:
    return _evaluate(world, encoder)


def test_two_stage_finds_every_planted_moment_first(two_stage: CorpusEvalResult) -> None:
    r = two_stage
    assert r.n_queries == 7
    assert [(s.qid, s.vid, s.reason) for s in r.skipped] == [("gone", "absent", SKIP_NO_VIDEO)]
    for t in ("0.5", "0.7"):
        assert r.vcmr[f"{t}-r1"] == SIX_OF_SEVEN
        assert r.svmr[f"{t}-r1"] >= SIX_OF_SEVEN
    assert r.vr["r1"] == SIX_OF_SEVEN
    assert r.vr["r10"] == r.vr["r100"] == 100.0
    for q, row in zip(r.ground_truth[:N_PLANTED], r.predictions[:N_PLANTED], strict=True):
        vid, start_s, end_s, _ = row["pred_corpus_moments"][0]
        assert (vid, start_s, end_s) == (q.vid, *q.windows[0])
        assert row["pred_relevant_windows"][0][:2] == list(q.windows[0])
        scores = [m[3] for m in row["pred_corpus_moments"]]
        assert scores == sorted(scores, reverse=True)
        assert 0 < len(row["pred_corpus_moments"]) <= 100
    mislabelled = r.predictions[N_PLANTED]
    assert mislabelled["pred_corpus_moments"][0][0] == "vid0"  # its text's planted video
    in_gt_video = [m[1:] for m in mislabelled["pred_corpus_moments"] if m[0] == "noise0"]
    assert in_gt_video and mislabelled["pred_relevant_windows"] == in_gt_video
    assert r.settings["localizer"] == "similarity"
    assert r.settings["levels"] == ["global", "action", "entity"]


def test_latency_has_every_stage(two_stage: CorpusEvalResult) -> None:
    assert tuple(two_stage.latency_ms) == LATENCY_KEYS
    for stats in two_stage.latency_ms.values():
        p50, p99 = stats["p50"], stats["p99"]
        assert p50 is not None and p99 is not None and 0 <= p50 <= p99
    total = two_stage.latency_ms["total"]["p50"]
    stage1 = two_stage.latency_ms["stage1"]["p50"]
    assert total is not None and stage1 is not None and total >= stage1


def test_stage1_only_and_level_ablation(world: World, encoder: Encoder) -> None:
    action = _evaluate(
        world, encoder, CorpusEvalOptions(stage1_only=True, levels=("global", "action"))
    )
    assert action.vcmr["0.5-r1"] == SIX_OF_SEVEN
    assert all(action.vcmr[f"0.7-r{k}"] == 0.0 for k in (1, 5, 10, 100))
    assert all(action.svmr[f"0.7-r{k}"] == 0.0 for k in (1, 5, 10, 100))
    assert action.vr["r1"] == SIX_OF_SEVEN
    assert action.settings["localizer"] is None
    assert action.settings["levels"] == ["global", "action"]
    assert action.settings["search"]["weight_entity"] == 0.0
    assert action.latency_ms["stage2"] == {"p50": None, "p99": None, "mean": None}
    assert action.latency_ms["features"]["p50"] is None
    best = action.predictions[0]["pred_corpus_moments"][0]
    assert best[0] == "vid0" and best[2] - best[1] == 8.0  # one 4-clip action window

    entity = _evaluate(world, encoder, CorpusEvalOptions(stage1_only=True))
    assert entity.vcmr["0.7-r1"] == SIX_OF_SEVEN

    whole = _evaluate(world, encoder, CorpusEvalOptions(stage1_only=True, levels=("global",)))
    for q, row in zip(whole.ground_truth, whole.predictions, strict=True):
        assert all((m[1], m[2]) == (0.0, 60.0) for m in row["pred_corpus_moments"])
        assert len(row["pred_corpus_moments"]) == 10, q.qid  # one per video
    assert whole.vr["r1"] == SIX_OF_SEVEN
    assert whole.vr["r10"] == whole.vr["r100"] == 100.0
    for t in ("0.5", "0.7"):
        assert whole.vcmr[f"{t}-r1"] == 0.0
        assert whole.vcmr[f"{t}-r10"] == whole.vcmr[f"{t}-r100"] == ONE_OF_SEVEN
        assert whole.svmr[f"{t}-r1"] == ONE_OF_SEVEN  # only the mislabelled query


def test_stage2_switch_in_the_service(world: World, encoder: Encoder) -> None:
    _, settings, catalog, _ = world
    service = SearchService(settings, catalog, encoder_factory=lambda spec, device: encoder)
    request = SearchRequest(QUERIES[1], top_k=3, debug=True, stage2=False)
    response = service.search(request)
    assert response.timings_ms is not None and "stage2" not in response.timings_ms
    assert [Path(m.uri).stem for m in response.results] == ["vid1"] * 3
    first = response.results[0]
    assert isinstance(first, MomentResult)
    assert (first.start_s, first.end_s) == (12.0, 24.0)  # the planted entity state
    assert response.next_page_token is not None
    with pytest.raises(InputError, match="another query"):  # the token knows its mode
        service.search(SearchRequest(QUERIES[1], top_k=3, page_token=response.next_page_token))


def test_limit_and_skips(world: World, encoder: Encoder) -> None:
    r = _evaluate(world, encoder, CorpusEvalOptions(limit=2, top_k=5))
    assert r.n_queries == 2 and not r.skipped
    assert r.vcmr["0.7-r1"] == 100.0
    assert all(len(p["pred_corpus_moments"]) <= 5 for p in r.predictions)
    _, settings, catalog, gt = world
    no_windows = MomentQuery("test-split", QUERIES[2], "vid2", 60.0, [], [], [])
    absent = gt[-1]
    with pytest.raises(InputError, match="none of the 2 queries"):
        evaluate_collection(settings, catalog, [no_windows, absent])
    kept = evaluate_collection(
        settings,
        catalog,
        [gt[2], no_windows],
        make_service=lambda s, c: SearchService(s, c, encoder_factory=lambda *_: encoder),
    )
    assert [(s.qid, s.reason) for s in kept.skipped] == [("test-split", SKIP_NO_WINDOWS)]
    with pytest.raises(InputError, match="top_k"):
        evaluate_collection(settings, catalog, gt, CorpusEvalOptions(top_k=101))
    with pytest.raises(InputError, match="duplicate qids"):
        evaluate_collection(settings, catalog, [gt[0], gt[0]])


def test_run_settings_overrides(world: World) -> None:
    _, settings, _, _ = world
    run = run_settings(settings, ["entity"], "mesm")
    assert (run.search.weight_global, run.search.weight_action) == (0.0, 0.0)
    assert run.search.weight_entity == settings.search.weight_entity
    assert run.localizer.name == "mesm"
    assert settings.search.weight_global == 1.0  # the original is untouched
    with pytest.raises(InputError, match="levels must be"):
        run_settings(settings, ["global", "scene"])
    with pytest.raises(InputError, match="unknown localizer"):
        run_settings(settings, None, "nope")
    zero = settings.model_copy(
        update={"search": settings.search.model_copy(update={"weight_action": 0.0})}
    )
    with pytest.raises(InputError, match="weight 0"):
        run_settings(zero, ["action"])


def test_vids_by_stem_or_metadata(world: World) -> None:
    _, settings, catalog, _ = world
    catalog.create_collection("dup", "tiny-random")
    rng = np.random.default_rng(1)
    clips = [_unit(rng.standard_normal((4, 64))) for _ in range(3)]
    ingest_features(
        catalog,
        settings,
        "dup",
        [
            FeatureVideo("/a/x.mp4", clips[0], 8.0),
            FeatureVideo("/b/x.mp4", clips[1], 8.0),
            FeatureVideo("/c/z.mp4", clips[2], 8.0, metadata={"vid": "special"}),
        ],
    )
    vids = collection_vids(catalog, "dup")
    assert sorted(vids) == ["special", "x"] and len(vids["x"]) == 2
    query = MomentQuery(1, "anything", "x", 8.0, [(0.0, 2.0)], [], [])
    with pytest.raises(InputError, match="names 2 videos"):
        evaluate_collection(settings, catalog, [query], CorpusEvalOptions("dup"))


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_json_predictions_and_standalone_eval(
    world: World,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, _, _, _ = world
    config, annotations, pred = root / "config.toml", root / "annotations.jsonl", root / "p.jsonl"
    base = ["--config", str(config), "eval", "corpus", "--annotations", str(annotations)]
    code, out, err = run_cli(capsys, *base, "--pred-out", str(pred), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert list(data) == [
        "n_queries",
        "skipped",
        "vcmr",
        "svmr",
        "vr",
        "latency_ms",
        "settings",
        "files",
    ]
    assert data["n_queries"] == 7
    assert data["skipped"] == [{"qid": "gone", "vid": "absent", "reason": SKIP_NO_VIDEO}]
    assert data["vcmr"]["0.7-r1"] == SIX_OF_SEVEN and data["vr"]["r10"] == 100.0
    assert set(data["latency_ms"]) == set(LATENCY_KEYS)
    assert data["settings"]["collection"] == "c" and data["settings"]["top_k"] == 100
    rows = load_predictions(pred)
    assert [row["qid"] for row in rows] == [*range(N_PLANTED), "mislabelled"]
    gt_subset = Path(data["files"]["ground_truth"])
    assert [q.qid for q in load_qvhighlights(gt_subset)] == [row["qid"] for row in rows]

    # The planted queries alone: standalone eval of the written predictions.
    code, out, err = run_cli(capsys, *base, "--limit", "6", "--pred-out", str(pred))
    assert code == 0, err
    assert "VCMR IoU 0.7" in out and "encode_text" in out and "vtr eval moments" in out
    assert [q.qid for q in load_qvhighlights(gt_subset)] == list(range(N_PLANTED))  # rewritten
    code, out, err = run_cli(
        capsys, "eval", "moments", "--gt", str(gt_subset), "--pred", str(pred), "--json"
    )
    assert code == 0, err
    brief = json.loads(out)["brief"]
    assert brief["MR-full-R1@0.5"] == brief["MR-full-R1@0.7"] == 100.0

    code, out, err = run_cli(capsys, *base, "--stage1-only", "--levels", "global", "--json")
    assert code == 0, err
    assert json.loads(out)["vcmr"]["0.5-r1"] == 0.0


def test_cli_user_errors(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    root, _, _, _ = world
    base = ["--config", str(root / "config.toml"), "eval", "corpus"]
    annotations = str(root / "annotations.jsonl")
    for args, message in [
        (["--annotations", annotations, "--localizer", "mesm"], "needs localizer.checkpoint"),
        (["--annotations", annotations, "--levels", "global,scene"], "levels must be"),
        (["--annotations", annotations, "--collection", "nope"], "unknown collection"),
        (["--annotations", str(root / "missing.jsonl")], "no such file"),
    ]:
        code, out, err = run_cli(capsys, *base, *args)
        assert code == 1 and out == ""
        assert err.startswith("error: ") and message in err
        assert len(err.strip().splitlines()) == 1
