"""Encoders on tiny random-init models: shapes, normalisation, token features, registry, offline."""

import json
import socket
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import numpy as np
import pytest
import torch

from engine.decode import ClipFrames
from engine.encoder_registry import (
    EncoderSpec,
    list_encoders,
    register_encoder,
    resolve_encoder,
)
from engine.encoders import (
    OPENAI_MEAN,
    OPENAI_STD,
    Encoder,
    ImageTransform,
    create_encoder,
    encode_video_clips,
    preprocess_frames,
)
from engine.errors import InputError, ModelError

LONG_TEXT = " ".join(["the chef slowly cuts a large pizza into eight pieces"] * 12)  # > 77 BPE


@pytest.fixture(scope="module")
def tiny() -> Encoder:
    return create_encoder("tiny-random", device="cpu")


def frames(n: int, height: int = 40, width: int = 60, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def manual_token_features(model: Any, ids: torch.Tensor) -> torch.Tensor:
    """The CLIP text tower written out: embeddings, causal transformer, ln_final."""
    x = model.token_embedding(ids) + model.positional_embedding  # (B, 77, W)
    x = model.transformer(x, attn_mask=model.attn_mask)
    return model.ln_final(x)  # (B, 77, W)


def clip_ids(encoder: Any, text: str, n_bpe: int) -> torch.Tensor:
    tok = encoder.tokenizer
    row = [tok.sot_token_id, *tok.encode(text)[:n_bpe], tok.eot_token_id]
    ids = torch.zeros(1, 77, dtype=torch.long)
    ids[0, : len(row)] = torch.tensor(row)
    return ids


def test_tiny_encoder_shapes_and_normalisation(tiny: Encoder) -> None:
    assert (tiny.embed_dim, tiny.token_dim, tiny.image_size) == (64, 64, 32)
    assert tiny.device == torch.device("cpu") and tiny.dtype == torch.float32
    pixels = tiny.preprocess(frames(5))
    assert pixels.shape == (5, 3, 32, 32) and pixels.dtype == torch.float32
    images = tiny.encode_images(pixels)
    assert images.shape == (5, 64) and images.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)

    text = tiny.encode_text(["a red square moves left", "", LONG_TEXT], max_tokens=32)
    assert text.sentence.shape == (3, 64) and text.sentence.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text.sentence, axis=1), 1.0, atol=1e-5)
    assert text.tokens.shape == (3, 32, 64) and text.tokens.dtype == np.float32
    assert text.mask.shape == (3, 32) and text.mask.dtype == bool
    n_bpe = len(tiny.tokenizer.encode("a red square moves left"))  # type: ignore[attr-defined]
    assert text.mask.sum(axis=1).tolist() == [n_bpe + 2, 2, 32]  # SOT + BPE + EOT
    assert np.all(text.tokens[~text.mask] == 0.0)  # padding zeroed
    assert np.all(np.abs(text.tokens[text.mask]).sum(axis=-1) > 0)
    # not normalised here: MESM normalises the token vectors itself
    assert not np.allclose(np.linalg.norm(text.tokens[text.mask], axis=-1), 1.0, atol=1e-3)


def test_token_features_match_the_text_tower_written_out(tiny: Encoder) -> None:
    model = tiny.model  # type: ignore[attr-defined]
    short, max_tokens = "a red square moves left", 32
    got = tiny.encode_text([short, LONG_TEXT], max_tokens=max_tokens)
    with torch.inference_mode():
        for row, text in enumerate([short, LONG_TEXT]):
            ids = clip_ids(tiny, text, max_tokens - 2)  # EOT inside the window
            n_valid = int((ids != 0).sum())
            if text == LONG_TEXT:
                assert n_valid == max_tokens
                assert ids[0, max_tokens - 1] == tiny.tokenizer.eot_token_id  # type: ignore[attr-defined]
            expected = manual_token_features(model, ids)[0, :max_tokens].numpy()
            expected[n_valid:] = 0.0
            np.testing.assert_allclose(got.tokens[row], expected, atol=1e-5)
            assert got.mask[row].tolist() == [i < n_valid for i in range(max_tokens)]
    # The sentence embedding sees the whole text (up to 77 tokens), as open_clip's encode_text.
    import open_clip

    full = open_clip.tokenizer.SimpleTokenizer()([short, LONG_TEXT])
    with torch.inference_mode():
        reference = model.encode_text(full, normalize=True).numpy()
    np.testing.assert_allclose(got.sentence, reference, atol=1e-5)


def test_batched_equals_one_by_one(tiny: Encoder) -> None:
    texts = ["a dog", "two people talk in a kitchen", LONG_TEXT]
    together = tiny.encode_text(texts, max_tokens=16)
    for i, text in enumerate(texts):
        alone = tiny.encode_text([text], max_tokens=16)
        np.testing.assert_allclose(together.sentence[i], alone.sentence[0], atol=1e-5)
        np.testing.assert_allclose(together.tokens[i], alone.tokens[0], atol=1e-5)
        np.testing.assert_array_equal(together.mask[i], alone.mask[0])
    pixels = tiny.preprocess(frames(4))
    batch = tiny.encode_images(pixels)
    singles = np.concatenate([tiny.encode_images(pixels[i : i + 1]) for i in range(4)])
    np.testing.assert_allclose(batch, singles, atol=1e-5)


def test_random_init_is_seeded() -> None:
    a = create_encoder("tiny-random", device="cpu")
    b = create_encoder("tiny-random", device="cpu")
    register_encoder(
        EncoderSpec("tiny-random-seed1", "open_clip", "vtr-tiny", "random", seed=1), replace=True
    )
    c = create_encoder("tiny-random-seed1", device="cpu")
    pixels = a.preprocess(frames(2))
    np.testing.assert_array_equal(a.encode_images(pixels), b.encode_images(pixels))
    assert not np.allclose(a.encode_images(pixels), c.encode_images(pixels), atol=1e-3)


def test_a_checkpoint_file_loads_through_the_spec_string(tiny: Encoder, tmp_path: Path) -> None:
    checkpoint = tmp_path / "tiny.pt"
    torch.save(tiny.model.state_dict(), checkpoint)  # type: ignore[attr-defined]
    loaded = create_encoder(f"open_clip:vtr-tiny:{checkpoint}", device="cpu")
    pixels = tiny.preprocess(frames(3))
    np.testing.assert_allclose(loaded.encode_images(pixels), tiny.encode_images(pixels), atol=1e-6)
    texts = ["a cat jumps"]
    np.testing.assert_allclose(
        loaded.encode_text(texts).tokens, tiny.encode_text(texts).tokens, atol=1e-6
    )


def test_preprocess_resizes_short_side_then_centre_crops() -> None:
    transform = ImageTransform(size=32, mean=OPENAI_MEAN, std=OPENAI_STD)
    wide = np.zeros((1, 32, 96, 3), np.uint8)
    wide[:, :, :32] = (0, 0, 255)  # blue left third
    wide[:, :, 32:64] = (255, 0, 0)  # red centre
    wide[:, :, 64:] = (0, 0, 255)
    pixels = preprocess_frames(wide, transform)  # (1, 3, 32, 32)
    red = (torch.tensor([1.0, 0.0, 0.0]) - torch.tensor(OPENAI_MEAN)) / torch.tensor(OPENAI_STD)
    torch.testing.assert_close(pixels[0].mean(dim=(1, 2)), red, atol=1e-5, rtol=0)

    big = np.broadcast_to(np.arange(64, dtype=np.uint8)[None, :, None, None], (2, 64, 64, 3))
    small = preprocess_frames(np.ascontiguousarray(big), transform)
    assert small.shape == (2, 3, 32, 32)
    squash = ImageTransform(size=32, mean=(0.5,) * 3, std=(0.5,) * 3, resize_mode="squash")
    assert preprocess_frames(wide, squash).shape == (1, 3, 32, 32)
    with pytest.raises(InputError):
        preprocess_frames(np.zeros((2, 8, 8), np.uint8), transform)


def test_encode_video_clips_averages_frames_per_clip(tiny: Encoder) -> None:
    clips = [ClipFrames(i, 2.0 * i, 2.0 * i + 2, frames(3, seed=i), np.zeros(3)) for i in range(5)]
    for batch_size in (1, 4, 64):
        result = encode_video_clips(tiny, clips, batch_size=batch_size)
        assert result.shape == (5, 64) and result.dtype == np.float32
        for i, clip in enumerate(clips):
            mean = tiny.encode_images(tiny.preprocess(clip.frames)).mean(axis=0)
            np.testing.assert_allclose(result[i], mean / np.linalg.norm(mean), atol=1e-5)
    assert encode_video_clips(tiny, [], batch_size=8).shape == (0, 64)


def test_registry_table_and_unknown_names() -> None:
    names = [spec.name for spec in list_encoders()]
    for name in ("clip-vit-b32", "clip-vit-b16", "clip-vit-l14", "siglip-b16", "hf-clip-vit-b32"):
        assert name in names
    spec = resolve_encoder("clip-vit-b32")
    assert (spec.backend, spec.arch, spec.weights) == ("open_clip", "ViT-B-32", "openai")
    with pytest.raises(ModelError, match="unknown encoder 'clip-vit-b33'; known: clip-vit-b32"):
        create_encoder("clip-vit-b33")
    parsed = resolve_encoder("open_clip:ViT-B-16:/weights/b16.pt")
    assert (parsed.backend, parsed.arch, parsed.weights) == (
        "open_clip",
        "ViT-B-16",
        "/weights/b16.pt",
    )
    assert resolve_encoder("hf:org/model").arch == "org/model"
    shipped = resolve_encoder("vtr-synth-s")
    assert (shipped.backend, resolve_encoder(f"vtr:{shipped.weights}").weights) == (
        "vtr",
        shipped.weights,
    )
    for bad in ("open_clip:ViT-B-32", "open_clip::x", "hf:", "vtr:"):
        with pytest.raises(ModelError, match="bad encoder spec"):
            resolve_encoder(bad)
    with pytest.raises(ModelError, match="already registered"):
        register_encoder(EncoderSpec("clip-vit-b32", "open_clip", "ViT-B-32", "openai"))


def test_missing_weight_file_and_unknown_tag(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="neither a file that exists nor a pretrained tag"):
        create_encoder(f"open_clip:ViT-B-32:{tmp_path / 'absent.pt'}", device="cpu")
    with pytest.raises(ModelError, match="unknown open_clip architecture"):
        create_encoder("open_clip:ViT-Q-99:openai", device="cpu")
    with pytest.raises(ModelError, match="no encoder checkpoint"):
        create_encoder(f"vtr:{tmp_path / 'absent.pt'}", device="cpu")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Records (and refuses) every attempt to open a network connection."""
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    # As if HF_HUB_OFFLINE=1 was set before start-up (huggingface_hub reads it at import).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return attempts


def test_offline_pretrained_tag_fails_fast_with_instructions(
    tmp_path: Path, no_network: list[object]
) -> None:
    with pytest.raises(ModelError) as caught:
        create_encoder("clip-vit-b32", device="cpu", cache_dir=tmp_path)
    message = str(caught.value)
    assert "HF_HUB_OFFLINE" in message
    assert "open_clip:ViT-B-32:/path/to/file" in message
    assert caught.value.code == "model_error"
    with pytest.raises(ModelError, match="hf:/path/to/that/directory"):
        create_encoder("hf-clip-vit-b32", device="cpu", cache_dir=tmp_path)
    assert no_network == []  # the cache was checked, the hub never contacted


def write_tiny_hf_clip(directory: Path) -> Path:
    """A random-init transformers CLIP with CLIP's real BPE vocabulary, saved to a folder."""
    import open_clip
    import transformers

    bpe = open_clip.tokenizer.SimpleTokenizer()
    tokenizer = transformers.CLIPTokenizer(
        vocab=dict(bpe.encoder),
        merges=sorted(bpe.bpe_ranks, key=bpe.bpe_ranks.get),
        bos_token="<start_of_text>",
        eos_token="<end_of_text>",
        pad_token="<end_of_text>",
        unk_token="<end_of_text>",
        model_max_length=77,
    )
    layers = {"num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    config = transformers.CLIPConfig(
        text_config={"hidden_size": 32, **layers},
        vision_config={"hidden_size": 32, "image_size": 32, "patch_size": 8, **layers},
        projection_dim=16,
    )
    torch.manual_seed(0)
    transformers.CLIPModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    transformers.CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(directory)
    assert json.loads((directory / "config.json").read_text())["model_type"] == "clip"
    return directory


def test_hf_backend_from_a_local_directory(
    tmp_path: Path, tiny: Encoder, no_network: list[object]
) -> None:
    encoder = create_encoder(f"hf:{write_tiny_hf_clip(tmp_path / 'clip')}", device="cpu")
    assert (encoder.embed_dim, encoder.token_dim, encoder.image_size) == (16, 32, 32)
    images = encoder.encode_images(encoder.preprocess(frames(3)))
    assert images.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)

    texts = ["a red square moves left", LONG_TEXT]
    got = encoder.encode_text(texts, max_tokens=12)
    np.testing.assert_allclose(np.linalg.norm(got.sentence, axis=1), 1.0, atol=1e-5)
    assert got.tokens.shape == (2, 12, 32)
    # same BPE as open_clip: same valid lengths, EOT inside the window for the long text
    assert got.mask.tolist() == tiny.encode_text(texts, max_tokens=12).mask.tolist()
    assert np.all(got.tokens[~got.mask] == 0.0)
    model = encoder.model  # type: ignore[attr-defined]
    ids = torch.tensor([encoder.tokenizer(texts[0])["input_ids"]])  # type: ignore[attr-defined]
    with torch.inference_mode():
        hidden = model.text_model(input_ids=ids).last_hidden_state[0].numpy()  # (n, 32)
    n = ids.shape[1]
    np.testing.assert_allclose(got.tokens[0, :n], hidden, atol=1e-5)
    assert no_network == []
