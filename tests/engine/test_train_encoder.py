"""The synth encoder: losses, cached pixels = ingest pixels, a brief retrain that learns,
checkpoints that load through the encoder registry, and the shipped model."""

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from engine.decode import iter_clips
from engine.encoder_checkpoint import CHECKPOINT_FORMAT, CLIP_VOCAB_SIZE, read_checkpoint
from engine.encoder_registry import resolve_encoder
from engine.encoders import create_encoder
from engine.errors import InputError, ModelError
from engine.synth import generate_corpus, render_video
from engine.synth.world import COLOURS, plan_corpus
from engine.train_encoder.data import (
    ACTION_CONCEPTS,
    ENTITY_CONCEPTS,
    GEOMETRY_PARTS,
    GEOMETRY_TARGETS,
    REVERSED_ACTION,
    TrainingCorpus,
    counterfactual_sentences,
    covers,
    describe_event,
    geometry_labels,
    other_entities,
    reverses,
)
from engine.train_encoder.losses import (
    focal_bce,
    masked_mse,
    multi_positive_nce,
    soft_target_ce,
    symmetric_nce,
)
from engine.train_encoder.model import (
    EOT_ID,
    SOT_ID,
    EncoderConfig,
    HeadConfig,
    LevelHeads,
    SynthClip,
    TokenVocab,
    gather_ranges,
    load_trained_encoder,
    model_from_checkpoint,
    reverse_in_time,
)
from engine.train_encoder.train import (
    TextTokens,
    TrainConfig,
    counterfactual_loss,
    counterfactual_term,
    embed_corpus,
    encode_text,
    image_transform,
    stage1_loss,
    stage2_loss,
    train_encoder,
    with_spans,
)
from tests.engine.tiny_encoder import LAYOUT, TINY


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three generated videos of 20-30 s (10-15 clips each)."""
    out = tmp_path_factory.mktemp("synth")
    generate_corpus(out, n_videos=3, seed=11, min_seconds=20, max_seconds=30, size=(64, 48))
    return out


# --- losses ---------------------------------------------------------------------------


def test_multi_positive_nce_is_cross_entropy_with_one_positive() -> None:
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([0, 3, 6, 2, 2])
    positive = F.one_hot(target, 7).bool()
    assert torch.allclose(multi_positive_nce(logits, positive), F.cross_entropy(logits, target))
    # two positives: -log of their summed probability; a row without one is skipped
    positive[0, 1] = True
    positive[4] = False
    p = logits.softmax(dim=1)
    expected = -torch.log(torch.stack([p[0, 0] + p[0, 1], p[1, 3], p[2, 6], p[3, 2]])).mean()
    assert torch.allclose(multi_positive_nce(logits, positive), expected)
    both = symmetric_nce(logits, positive)
    assert torch.allclose(both, 0.5 * (expected + multi_positive_nce(logits.T, positive.T)))
    assert float(multi_positive_nce(logits, torch.zeros(5, 7, dtype=torch.bool))) == 0.0


def test_soft_target_and_focal_losses_against_naive() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 4, generator=g)
    weights = torch.tensor([[0.0, 1.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]])
    logp = logits.log_softmax(dim=1)
    expected = -((0.25 * logp[0, 1] + 0.75 * logp[0, 2]) + logp[2, 0]) / 2
    assert torch.allclose(soft_target_ce(logits, weights), expected)
    targets = (torch.rand(3, 4, generator=g) > 0.5).float()
    naive = 0.0
    for x, t in zip(logits.flatten().tolist(), targets.flatten().tolist(), strict=True):
        p = 1 / (1 + math.exp(-x))
        pt, a = (p, 0.25) if t == 1 else (1 - p, 0.75)
        naive += -a * (1 - pt) ** 2 * math.log(pt)
    assert math.isclose(
        float(focal_bce(logits, targets)), naive / max(1.0, targets.sum().item()), rel_tol=1e-5
    )


# --- vocabulary and data --------------------------------------------------------------


def test_masked_mse_counts_known_targets_only() -> None:
    prediction = torch.tensor([[1.0, 5.0], [0.0, 2.0]])
    target = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    known = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert float(masked_mse(prediction, target, known)) == pytest.approx((1 + 0 + 4) / 3)
    assert float(masked_mse(prediction, target, torch.zeros_like(known))) == 0.0


def test_geometry_labels_follow_the_plan() -> None:
    """Each action shows in the pose targets of its actor's colour slot."""
    corpus = plan_corpus(n_videos=12, seed=4, min_seconds=60, max_seconds=90)
    width = len(GEOMETRY_PARTS)
    seen = set()
    for video in corpus.videos:
        for event in video.events:
            slot = list(COLOURS).index(event.entity.colour) * width
            times = np.array([event.start_s + 0.01, event.end_s - 0.01])
            pose, known = geometry_labels(video, times)
            assert pose.shape == known.shape == (2, len(GEOMETRY_TARGETS))
            if not known[:, slot : slot + 3].all():
                continue  # out of the crop at one end
            x, y, radius = (pose[:, slot + k] for k in range(3))
            if event.action == "move_right":
                assert x[1] - x[0] > 0.4, (x, event)
            elif event.action == "move_up":
                assert y[1] - y[0] < -0.4, (y, event)
            elif event.action == "grow":
                assert radius[0] < -0.5 and radius[1] > 0.5, (radius, event)
            elif event.action == "spin":
                assert known[:, slot + 3 : slot + 5].all()
            else:
                continue
            seen.add(event.action)
            if event.entity.shape in ("circle", "ring"):
                assert not known[:, slot + 3 : slot + 5].any()  # round: no turn
    assert seen == {"move_right", "move_up", "grow", "spin"}


def test_token_vocab_rows() -> None:
    vocab = TokenVocab([320, 1929, 320, 49406])
    assert vocab.token_ids == (320, 1929) and vocab.size == 6
    ids = torch.tensor([[SOT_ID, 320, 1929, 777, EOT_ID, 0]])
    assert vocab.rows(ids).tolist() == [[4, 2, 3, TokenVocab.UNK_ROW, 5, 0]]
    assert int(vocab.rows(torch.tensor(EOT_ID))) == vocab.size - 1  # argmax pooling finds EOT
    with pytest.raises(ModelError):
        TokenVocab([60000])


def test_cached_pixels_are_ingest_pixels(tiny_corpus: Path, tmp_path: Path) -> None:
    corpus = TrainingCorpus.load(tiny_corpus, image_transform(TINY), cache_dir=tmp_path)
    encoder = create_encoder("tiny-random", "cpu")  # 32 px, the open_clip defaults
    assert encoder.transform == corpus.transform
    video = corpus.plans[0].videos[1]
    first, end = corpus.caches[0].offsets[video.vid]
    clips = list(iter_clips(tiny_corpus / "videos" / f"{video.vid}.mp4", 2.0, 1, 32))
    assert len(clips) == end - first == video.duration_s / 2
    ingest = torch.cat([encoder.preprocess(c.frames) for c in clips])  # what ingest encodes
    cached = corpus.pixels(np.arange(first, end))
    torch.testing.assert_close(cached, ingest, atol=1e-5, rtol=0)
    # the second load reads the cache (memory-mapped) instead of decoding again
    again = TrainingCorpus.load(tiny_corpus, image_transform(TINY), cache_dir=tmp_path)
    assert isinstance(again.caches[0].frames, np.memmap)
    np.testing.assert_array_equal(again.caches[0].frames, corpus.caches[0].frames)


def test_head_training_sees_spans_of_every_length() -> None:
    layout = {"action": [(0, 4), (2, 6), (4, 8), (6, 10)], "entity": [(0, 10)]}
    wider = with_spans(layout, 10, (1, 6))
    assert wider["entity"] == layout["entity"]
    assert set(layout["action"]) <= set(wider["action"])
    assert [(s, e) for s, e in wider["action"] if e - s == 6] == [(0, 6), (3, 9)]
    assert sum(e - s == 1 for s, e in wider["action"]) == 10
    assert with_spans(layout, 10, (12,))["action"] == layout["action"]


def test_fast_span_vectors_equal_the_action_head_on_each_span() -> None:
    torch.manual_seed(3)
    heads = LevelHeads(HeadConfig(dim=16, hidden=8)).eval()
    with torch.no_grad():  # random residual and attention weights: every branch counts
        for p in heads.parameters():
            p.copy_(torch.randn_like(p))
        heads.action_pool.score[-1].weight.mul_(30)  # attention scores far apart
    for n in (1, 2, 3, 4, 5, 9, 40):
        clips = F.normalize(torch.randn(n, 16), dim=-1)
        spans = [(s, e) for s in range(n) for e in range(s + 1, n + 1)]  # every span
        starts, ends = (torch.tensor(c) for c in zip(*spans, strict=True))
        with torch.inference_mode():
            fast = heads.action_span_vectors(clips, starts, ends)
            one_by_one = torch.cat(
                [
                    heads.action_vectors(clips[s:e][None], torch.ones(1, e - s, dtype=torch.bool))
                    for s, e in spans
                ]
            )
        torch.testing.assert_close(fast, one_by_one, atol=1e-5, rtol=1e-5)


def test_batches_say_what_fits_what(tiny_corpus: Path, tmp_path: Path) -> None:
    corpus = TrainingCorpus.load(tiny_corpus, image_transform(TINY), cache_dir=tmp_path)
    rng = np.random.default_rng(0)
    refs = corpus.events[:6]
    batch = corpus.event_batch(refs, 4, rng)
    assert batch.rows.shape == (24,) and batch.valid.all()
    assert batch.entity_labels.shape == (24, len(ENTITY_CONCEPTS))
    assert batch.geometry.shape == batch.geometry_known.shape == (24, len(GEOMETRY_TARGETS))
    assert batch.geometry_known.any(axis=1).all()  # some object is in view in every clip
    assert batch.action_labels.shape == (6, len(ACTION_CONCEPTS))
    for j, ref in enumerate(refs):
        assert batch.text_window[j, j]  # each sentence fits its own event's window
        event = corpus.videos[ref.video].plan.events[ref.event]
        assert batch.action_labels[j, ACTION_CONCEPTS.index(event.action)] == 1.0
        assert batch.text_image[j, 4 * j : 4 * j + 4].any()
    layouts = [LAYOUT.spans(np.zeros((vc.n_clips, 2))) for vc in corpus.videos]
    vb = corpus.video_batch([0, 1, 2], layouts, 2, rng)
    assert vb.text_video.shape == (len(vb.texts), 3) and vb.text_video.any(axis=1).all()
    assert (vb.text_window.max(axis=1) > 0).all()  # some window overlaps each event
    assert vb.text_clip.shape[1] == sum(vc.n_clips for vc in corpus.videos)
    assert covers((0, 4), (2, 6)) and not covers((0, 4), (3, 9)) and covers((3, 5), (0, 8))
    event = corpus.videos[0].plan.events[0]
    description = describe_event(event, np.random.default_rng(3))
    assert description.matches(event) and description.text


def test_counterfactual_sentences_never_fit_their_event() -> None:
    plan = plan_corpus(n_videos=20, seed=3)
    rng = np.random.default_rng(0)
    checked, swapped = set(), 0
    for video in plan.videos:
        for event in video.events:
            description = describe_event(event, rng)
            wrong = counterfactual_sentences(description, 4, rng)
            assert len(wrong) == 4 and len({c.action + c.target_colour for c in wrong}) == 4
            for c in wrong:
                assert not c.matches(event), (description.text, c.text)
                assert (c.named, c.entity) == (description.named, description.entity)
            if description.action in REVERSED_ACTION:
                assert wrong[0].action == REVERSED_ACTION[description.action]
            checked.add(description.action)
            # with entity swaps: the same action given to the video's other objects
            others = other_entities(video, event)
            assert event.entity not in others  # colours are never shared within a video
            mixed = counterfactual_sentences(description, 4, rng, others, entity_swaps=2)
            assert len(mixed) == 4 and not any(c.matches(event) for c in mixed)
            swaps = [c for c in mixed if c.entity != description.entity]
            assert len(swaps) <= 2 and all(c.action == description.action for c in swaps)
            assert all(c.entity in others for c in swaps)
            swapped += len(swaps)
    assert len(checked) >= 10  # every kind of action came up
    assert swapped > 100
    assert counterfactual_sentences(description, 0, rng) == []
    moves = replace(description, action="move_left", target_colour="")
    assert reverses(moves) and not reverses(replace(moves, action="spin"))
    assert not reverses(replace(moves, action="change_colour"))  # backwards still changes
    assert reverses(replace(moves, action="change_colour", target_colour="blue"))


def test_reverse_in_time_flips_each_range() -> None:
    clips = torch.arange(6, dtype=torch.float32)[:, None].repeat(1, 2)  # clip t = (t, t)
    x, mask = gather_ranges(clips, [(0, 4), (3, 5)])
    flipped = reverse_in_time(x, mask)
    assert flipped[0, :, 0].tolist() == [3, 2, 1, 0]
    assert flipped[1, :, 0].tolist() == [4, 3, 0, 0]  # padding stays zero, at the end


def test_counterfactual_loss_against_naive(tiny_corpus: Path, tmp_path: Path) -> None:
    corpus = TrainingCorpus.load(tiny_corpus, image_transform(TINY), cache_dir=tmp_path)
    torch.manual_seed(0)
    vocab = TextTokens(TINY.context_length).vocabulary([q.text for q in corpus.queries])
    model = SynthClip(
        TINY, vocab, len(ENTITY_CONCEPTS), len(ACTION_CONCEPTS), 16, len(GEOMETRY_TARGETS)
    ).eval()
    for p in model.heads.action_out.parameters():  # switch the conv branch on
        torch.nn.init.normal_(p, std=0.5)
    tokens, device = TextTokens(TINY.context_length), torch.device("cpu")
    features = embed_corpus(model, corpus, device)
    firsts = [vc.first_row for vc in corpus.videos]
    layouts = [LAYOUT.spans(np.zeros((vc.n_clips, 2))) for vc in corpus.videos]
    batch = corpus.video_batch([0, 1, 2], layouts, 3, np.random.default_rng(1), 3, 1)
    assert len(batch.counterfactuals) == 3 * len(batch.texts)
    with torch.no_grad():
        text = encode_text(model, tokens, batch.texts, device)
        counter = encode_text(model, tokens, batch.counterfactuals, device).view(
            len(batch.texts), 3, -1
        )
        ranges = [(firsts[p] + a, firsts[p] + b) for p, a, b in batch.windows]
        x_w, m_w = gather_ranges(features, ranges)
        windows = model.heads.action_vectors(x_w, m_w)
        fit = torch.from_numpy(batch.text_window)
        loss = counterfactual_loss(model, text, counter, x_w, m_w, windows, fit, batch.reverses)
        assert float(loss) == pytest.approx(
            float(counterfactual_term(model, tokens, batch, text, x_w, m_w, windows, fit))
        )
        scale = float(model.level_scale("action"))
        total = weight_sum = 0.0
        for i, w in zip(*np.nonzero(batch.text_window >= 0.25), strict=True):
            a, b = batch.windows[w][1:]
            first = firsts[batch.windows[w][0]]
            backwards = features[first + a : first + b].flip(0)[None]
            back = model.heads.action_vectors(backwards, torch.ones(1, b - a, dtype=torch.bool))
            scores = [text[i] @ windows[w], *(counter[i] @ windows[w])]
            if batch.reverses[i]:
                scores.append(text[i] @ back[0])
            logits = scale * torch.stack(scores)
            weight = float(batch.text_window[i, w])
            total += weight * float(-torch.log_softmax(logits, 0)[0])
            weight_sum += weight
    assert batch.reverses.any() and weight_sum > 0
    assert float(loss) == pytest.approx(total / weight_sum, rel=1e-4)


# --- training -------------------------------------------------------------------------


def test_brief_retrain_lowers_both_stage_losses(tiny_corpus: Path, tmp_path: Path) -> None:
    corpus = TrainingCorpus.load(tiny_corpus, image_transform(TINY), cache_dir=tmp_path)
    config = TrainConfig(
        epochs=6,
        head_epochs=6,
        batch_events=8,
        batch_videos=3,
        lr=3e-3,
        head_lr=3e-3,
        warmup_fraction=0.0,
        token_dropout=0.0,
        encoder=TINY,
        head_hidden=16,
        device="cpu",
        seed=0,
    )
    out = tmp_path / "enc.pt"
    result = train_encoder(corpus, out, config, LAYOUT, extra={"data": "tiny"})
    assert [h["stage"] for h in result.history] == ["encoder"] * 6 + ["heads"] * 6
    checkpoint = read_checkpoint(out)
    trained = model_from_checkpoint(checkpoint).eval()
    torch.manual_seed(0)  # the same initial weights train_encoder started from
    initial = SynthClip(
        TINY, trained.vocab, len(ENTITY_CONCEPTS), len(ACTION_CONCEPTS), 16, len(GEOMETRY_TARGETS)
    )
    initial.eval()
    tokens = TextTokens(TINY.context_length)
    device = torch.device("cpu")
    batch = corpus.event_batch(corpus.events, 4, np.random.default_rng(5), 3)
    assert len(batch.counterfactuals) == 3 * len(batch.texts)
    with torch.no_grad():
        weights = (0.5, 0.0, None, 0.0, 1.0, 1.0, 1.0)  # ... geometry, counterfactual on
        before = stage1_loss(initial, corpus, tokens, batch, device, *weights)[1]
        after = stage1_loss(trained, corpus, tokens, batch, device, *weights)[1]
    assert after["loss"] < 0.9 * before["loss"], (before, after)
    assert after["geometry"] < 0.9 * before["geometry"], (before, after)
    assert after["counterfactual"] < 0.9 * before["counterfactual"], (before, after)
    # stage 2: a few steps on the level heads alone lower one video batch's level losses
    features = embed_corpus(trained, corpus, device)
    firsts = [vc.first_row for vc in corpus.videos]
    counts = [vc.n_clips for vc in corpus.videos]
    layouts = [LAYOUT.spans(np.zeros((n, 2))) for n in counts]
    video_batch = corpus.video_batch([0, 1, 2], layouts, 3, np.random.default_rng(6), 3)
    optimizer = torch.optim.Adam(trained.heads.parameters(), lr=1e-2)
    levels, counter = [], []
    for _ in range(8):
        loss, parts = stage2_loss(
            trained, features, firsts, counts, tokens, video_batch, device, 1.0, 0.0, None, 1.0
        )
        levels.append(parts["global"] + parts["action"] + parts["entity"])
        counter.append(parts["counterfactual"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert levels[-1] < levels[0], levels
    assert 0 < counter[-1] < counter[0], counter

    # the checkpoint describes itself and loads through the encoder registry
    assert checkpoint["format"] == CHECKPOINT_FORMAT
    assert checkpoint["model_config"] == TINY.open_clip_config()
    table = checkpoint["token_table"]  # one stored row per trained id, UNK shared
    assert table["row_of_id"].shape == (CLIP_VOCAB_SIZE,)
    assert len(table["rows"]) == trained.vocab.size < 200
    assert "token_embedding.weight" not in checkpoint["state_dict"]
    assert checkpoint["train_args"]["epochs"] == 6 and checkpoint["train_args"]["data"] == "tiny"
    assert checkpoint["corpus"]["videos"] == 3
    assert len(checkpoint["metrics"]["training"]["history"]) == 12
    encoder = load_trained_encoder(out, "cpu")
    assert (encoder.embed_dim, encoder.token_dim, encoder.image_size) == (32, 32, 32)
    texts = ["the red circle moves to the left", "a big box zigzags"]  # "zigzags": unseen
    features_text = encoder.encode_text(texts, max_tokens=32)
    with torch.no_grad():
        expected = encode_text(trained, tokens, texts, device).numpy()
    np.testing.assert_allclose(features_text.sentence, expected, atol=1e-5)
    pixels = corpus.pixels(np.arange(5))
    with torch.no_grad():
        np.testing.assert_allclose(
            encoder.encode_images(pixels), trained.encode_images(pixels).numpy(), atol=1e-5
        )


def test_training_continues_from_a_checkpoint(tiny_corpus: Path, tmp_path: Path) -> None:
    corpus = TrainingCorpus.load(tiny_corpus, image_transform(TINY), cache_dir=tmp_path)
    config = TrainConfig(
        epochs=1, head_epochs=1, batch_events=8, batch_videos=3, encoder=TINY, head_hidden=16
    )
    first = tmp_path / "first.pt"
    train_encoder(corpus, first, replace(config, device="cpu"), LAYOUT)
    start = read_checkpoint(first)
    heads_only = tmp_path / "heads.pt"
    heads_config = replace(config, epochs=0, head_epochs=2, head_lr=1e-2, device="cpu")
    result = train_encoder(corpus, heads_only, heads_config, LAYOUT, init=start)
    assert [h["stage"] for h in result.history] == ["heads", "heads"]
    after = read_checkpoint(heads_only)
    for name, weight in start["state_dict"].items():  # the image tower is untouched
        if name.startswith("visual."):
            assert torch.equal(weight, after["state_dict"][name]), name
    changed = [
        not torch.equal(v, after["level_heads"]["state_dict"][k])
        for k, v in start["level_heads"]["state_dict"].items()
    ]
    assert any(changed)
    # stage 1 from the checkpoint moves the image tower on from its weights
    both = tmp_path / "both.pt"
    train_encoder(corpus, both, replace(config, lr=1e-4, device="cpu"), LAYOUT, init=start)
    moved = read_checkpoint(both)["state_dict"]["visual.conv1.weight"].float()
    original = start["state_dict"]["visual.conv1.weight"].float()
    assert 0 < (moved - original).abs().max() < 0.1 * original.abs().max()
    with pytest.raises(InputError, match="needs a checkpoint"):
        train_encoder(corpus, both, replace(config, epochs=0), LAYOUT)
    wider = replace(config, encoder=replace(TINY, vision_width=16))
    with pytest.raises(InputError, match="differs"):
        train_encoder(corpus, both, wider, LAYOUT, init=start)


def test_config_and_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        TrainConfig(epochs=-1)
    with pytest.raises(InputError):
        TrainConfig(batch_events=1)
    with pytest.raises(ModelError, match="no encoder checkpoint"):
        read_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not a vtr encoder checkpoint"):
        read_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read"):
        read_checkpoint(tmp_path / "junk.pt")


# --- the shipped model ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "runs"),
    [
        ("vtr-synth-s", [(2, 16), (1, 12), (0, 12)]),
        ("vtr-synth-s4", [(7, 12), (6, 14), (5, 12), (4, 0), (3, 12), (2, 16), (1, 12), (0, 12)]),
    ],
)
def test_shipped_checkpoint_loads_through_the_registry(
    name: str, runs: list[tuple[int, int]]
) -> None:
    spec = resolve_encoder(name)
    path = Path(spec.weights)
    assert path.is_file() and path.parent.name == "models"
    assert path.stat().st_size < 8 * 2**20
    checkpoint = read_checkpoint(path)
    assert checkpoint["model_config"] == EncoderConfig().open_clip_config()
    assert checkpoint["tokenizer"]["kind"] == "openai-clip-bpe"
    assert checkpoint["image"]["size"] == 96 and checkpoint["image"]["frames_per_clip"] == 1
    pairs = 2 if checkpoint["image"].get("motion_gap_s", 0.0) > 0 else 1  # frames per clip
    assert {"pooling", "trained"} <= set(checkpoint["metrics"]["eval"])
    chain = [checkpoint["train_args"]]  # this run, then the runs it continued from
    while "init" in chain[-1]:
        chain.append(chain[-1]["init"]["train_args"])
    assert [(args["seed"], args["epochs"]) for args in chain] == runs

    encoder = create_encoder(name, "cpu")
    assert (encoder.embed_dim, encoder.token_dim, encoder.context_length) == (128, 128, 32)
    assert encoder.image_size == 96
    frames = np.random.default_rng(0).integers(0, 256, (3 * pairs, 96, 128, 3), dtype=np.uint8)
    images = encoder.encode_images(encoder.preprocess(frames))
    assert images.shape == (3, 128)
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, rtol=1e-5)
    text = encoder.encode_text(["the small red circle slides to the left", "a star"], 32)
    assert text.sentence.shape == (2, 128) and text.tokens.shape == (2, 32, 128)
    np.testing.assert_allclose(np.linalg.norm(text.sentence, axis=1), 1.0, rtol=1e-5)
    assert text.mask.sum(axis=1).tolist() == [10, 4]  # SOT + BPE + EOT
    assert not text.tokens[1, 4:].any()  # padding zeroed


def test_shipped_s4_clips_keep_where_objects_are(tmp_path: Path) -> None:
    """Through the ingest path (render, decode, preprocess, encode), the pose head of
    vtr-synth-s4 reads each visible object's place and size back from its clip vector."""
    checkpoint = read_checkpoint(Path(resolve_encoder("vtr-synth-s4").weights))
    model = model_from_checkpoint(checkpoint).eval()
    encoder = create_encoder("vtr-synth-s4", "cpu")
    errors, spreads = [], []
    for video in plan_corpus(n_videos=2, seed=5, min_seconds=40, max_seconds=60).videos:
        path = render_video(video, tmp_path / f"{video.vid}.mp4")
        clips = list(
            iter_clips(path, 2.0, 1, encoder.image_size, motion_gap_s=encoder.motion_gap_s)
        )
        frames = np.concatenate([clip.frames for clip in clips])
        vectors = encoder.encode_images(encoder.preprocess(frames))
        with torch.no_grad():
            pose = model.geometry_outputs(torch.from_numpy(vectors)).numpy()
        target, known = geometry_labels(video, np.array([c.times_s[0] for c in clips]))
        place = np.zeros(len(GEOMETRY_TARGETS), bool)
        place[:: len(GEOMETRY_PARTS)] = place[1 :: len(GEOMETRY_PARTS)] = True  # x and y
        mask = known.astype(bool) & place
        errors.append(np.abs(pose - target)[mask])
        spreads.append(np.abs(target - target[mask].mean())[mask])
    error, spread = float(np.concatenate(errors).mean()), float(np.concatenate(spreads).mean())
    # measured: mean error 0.13 of the -1..1 crop, against 0.44 for the mean place
    assert error < 0.5 * spread, (error, spread)


def test_cli_trains_evaluates_and_records(tiny_corpus: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from api.cli.app import app

    out = tmp_path / "cli.pt"
    args = ["train", "encoder", "--data", str(tiny_corpus), "--out", str(out)]
    args += ["--epochs", "1", "--head-epochs", "1", "--eval-data", str(tiny_corpus)]
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [h["stage"] for h in summary["history"]] == ["encoder", "heads"]
    for strategy in ("pooling", "trained"):
        for phrasing in ("default", "heldout"):
            metrics = summary["eval"][strategy][phrasing]
            assert metrics["queries"] == 3 and metrics["videos"] == 3
            assert metrics["t2v_r1"] <= metrics["t2v_r5"] <= metrics["t2v_r10"] == 100.0
    checkpoint = read_checkpoint(out)
    assert checkpoint["metrics"]["eval"] == summary["eval"]
    assert checkpoint["train_args"]["data"] == [tiny_corpus.name]
    assert checkpoint["model_config"] == EncoderConfig().open_clip_config()  # the default
    more = tmp_path / "more.pt"
    again = ["train", "encoder", "--data", str(tiny_corpus), "--out", str(more), "--init", str(out)]
    heads_only = ["--epochs", "0", "--head-epochs", "1", "--counterfactual-weight", "0.5"]
    result = CliRunner().invoke(app, [*again, *heads_only, "--json"])
    assert result.exit_code == 0, result.output
    history = json.loads(result.stdout)["history"]
    assert [h["stage"] for h in history] == ["heads"] and history[0]["counterfactual"] > 0
    assert read_checkpoint(more)["train_args"]["counterfactual_weight"] == 0.5
    init = read_checkpoint(more)["train_args"]["init"]
    assert init["checkpoint"] == "cli.pt" and len(init["history"]) == 2
    bad = CliRunner().invoke(app, [*again, "--image-size", "64"])
    assert isinstance(bad.exception, InputError) and "takes 96 px" in str(bad.exception)
    bad = CliRunner().invoke(app, [*args, "--device", "tpu"])
    assert isinstance(bad.exception, InputError) and "--device must be" in str(bad.exception)
