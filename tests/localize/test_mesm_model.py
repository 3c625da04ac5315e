"""MESM model: official state_dict layout, golden outputs of the official code, forward.

Golden fixture `data/mesm_golden_tiny.pt` was produced once, outside this repository,
from the official implementation (github lntzm/MESM at commit 8501bde, files `model/`
and `utils/` only; `pandas` stubbed out because only an unused helper imports it), with
torch 2.14 on CPU:
- the official `MESM` was built as its `runner.build_model` does (T2VEncoder for the
  enhance and t2v encoders, Transformer with return_intermediate_dec and PReLU,
  PositionEmbeddingSine(normalize=True), TrainablePositionalEncoding(max_words_l + 1),
  rec_fw and rec_ss on, aux_loss on, 4 SS layers), but TINY: hidden 16, 4 heads, FFN 32,
  video input 20 (18 + 2 TEF), text 24, max_words_l 8, 10 queries; `text_encoder=None`
  (token features given directly), with official `vocab_size=32` so its word head has
  33 = our vocab_size 30 + 3 classes. `torch.manual_seed(0)` before building, then every
  parameter perturbed by 0.05 * N(0, 1) (generator seed 1) so zero-initialised tokens
  and biases are exercised.
- inputs (generator seed 2): 6 rows in video groups [2, 1, 3] with padded video lengths
  [12, 9, 12, 7, 10, 12] and word lengths [8, 5, 6, 3, 8, 4]; L2-normalised random
  features with TEF dims appended; masking weights, unknown-token and GT-clip masks.
- outputs saved: eval forward with dataset_name "qvhighlights" (`group`) and "charades"
  (`row`), recording the sampled negative rows; each row alone (`single`, negative
  sampler replaced because one group has no negative); a training forward with dropout
  0 and the FW-MESM masked positions recorded (`train_group`).
"""

import copy
import functools
import io
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as nnf

from engine.errors import InputError
from localize.mesm.config import MesmConfig, clip_only, preset
from localize.mesm.model import (
    MesmModel,
    build_model,
    mask_words,
    sample_negative_rows,
)

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models: one intra-op thread avoids OpenMP stalls on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _official_qvh_list() -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, dtype) rows of the committed official QVHighlights state_dict list."""
    rows = []
    for line in (DATA / "mesm_qvh_state_dict.txt").read_text().splitlines():
        match = re.fullmatch(r"(\S+) \(([\d, ]*)\) (\w+)", line)
        if match:
            shape = tuple(int(x) for x in match[2].replace(" ", "").split(",") if x)
            rows.append((match[1], shape, match[3]))
    return rows


@functools.cache
def _model(config: MesmConfig) -> MesmModel:
    return MesmModel(config)


def _ours(config: MesmConfig) -> list[tuple[str, tuple[int, ...], str]]:
    model = _model(config)
    return [
        (k, tuple(v.shape), str(v.dtype).removeprefix("torch."))
        for k, v in model.state_dict().items()
    ]


def _with_shapes(
    rows: list[tuple[str, tuple[int, ...], str]], changes: dict[str, tuple[int, ...]]
) -> list[tuple[str, tuple[int, ...], str]]:
    return [(n, changes.get(n, s), d) for n, s, d in rows]


def test_qvh_state_dict_equals_the_official_list() -> None:
    official = _official_qvh_list()
    assert len(official) == 273
    assert _ours(preset("qvhighlights")) == official
    assert sum(torch.Size(s).numel() for _, s, _ in official) == 13810358


def test_charades_state_dict_equals_the_official_layout() -> None:
    expected = _with_shapes(
        _official_qvh_list(),
        {
            "txt_position_embed.position_embeddings.weight": (17, 256),  # max_words_l 16 + 1
            "output_txt_proj.1.weight": (1114, 256),  # vocab 1111 + 3
            "output_txt_proj.1.bias": (1114,),
        },
    )
    assert _ours(preset("charades")) == expected


def test_clip_only_state_dict_has_a_514_wide_video_input() -> None:
    expected = _with_shapes(
        _official_qvh_list(),
        {
            "input_vid_proj.0.LayerNorm.weight": (514,),
            "input_vid_proj.0.LayerNorm.bias": (514,),
            "input_vid_proj.0.net.1.weight": (256, 514),
        },
    )
    assert _ours(clip_only(512)) == expected


def test_strict_load_of_an_official_layout_dict() -> None:
    gen = torch.Generator().manual_seed(0)
    state = {n: torch.randn(s, generator=gen) for n, s, _ in _official_qvh_list()}
    model = _model(preset("qvhighlights"))
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.query_embed.weight, state["query_embed.weight"])
    with pytest.raises(RuntimeError, match=r"text_encoder\.bogus"):
        model.load_state_dict({**state, "text_encoder.bogus": torch.zeros(1)}, strict=True)


# ---------------------------------------------------------------------------- golden


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(DATA / "mesm_golden_tiny.pt", weights_only=True)


def _golden_model(golden: dict, ss_video: str, train: bool = False) -> MesmModel:
    config = MesmConfig(**golden["config"], ss_video=ss_video)  # type: ignore[arg-type]
    if train:
        config = replace(config, dropout=0.0, input_dropout=0.0)
    model = MesmModel(config)
    model.load_state_dict(golden["state_dict"], strict=True)
    return model.train(train)


def _compare(out: dict, expected: dict, video_mask: torch.Tensor) -> None:
    out = dict(out)
    out["aux_pred_logits"] = out["aux_outputs"][0]["pred_logits"]
    out["aux_pred_spans"] = out["aux_outputs"][0]["pred_spans"]
    for key, want in expected.items():
        if key in ("neg_index", "recfw_masked"):
            continue
        got = out[key]
        if key in ("saliency_scores", "neg_saliency_scores", "enhanced_video_feat"):
            got, want = got[video_mask], want[video_mask]  # padding rows are unspecified
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4, msg=key)


@pytest.mark.parametrize(("ss_video", "key"), [("group", "group"), ("row", "row")])
def test_eval_forward_matches_the_official_outputs(golden: dict, ss_video: str, key: str) -> None:
    inp, expected = golden["inputs"], golden["outputs"][key]
    model = _golden_model(golden, ss_video)
    with torch.no_grad():
        out = model(
            inp["video_feat"],
            inp["video_mask"],
            inp["words_feat"],
            inp["words_mask"],
            inp["num_clips"],
            neg_index=expected["neg_index"],
        )
    _compare(out, expected, inp["video_mask"])


def test_training_forward_matches_the_official_reconstruction(golden: dict) -> None:
    inp, expected = golden["inputs"], golden["outputs"]["train_group"]
    model = _golden_model(golden, "group", train=True)
    out = model(
        inp["video_feat"],
        inp["video_mask"],
        inp["words_feat"],
        inp["words_mask"],
        inp["num_clips"],
        neg_index=expected["neg_index"],
        clip_mask=inp["clip_mask"],
        unknown_mask=inp["unknown_mask"],
        words_weight=inp["words_weight"],
        masked_words=expected["recfw_masked"],
    )
    assert torch.equal(out["recfw_masked"], expected["recfw_masked"])
    _compare(out, expected, inp["video_mask"])
    out["recfw_words_logit"].sum().backward()  # the reconstruction path is differentiable
    assert model.masked_token.grad is not None
    assert model.masked_token.grad.abs().sum() > 0


def test_fast_path_matches_the_official_one_video_at_a_time(golden: dict) -> None:
    inp, expected = golden["inputs"], golden["outputs"]["single"]
    model = _golden_model(golden, "row")
    lengths = inp["video_mask"].sum(1).tolist()
    with torch.no_grad():
        for i, length in enumerate(lengths):
            words = inp["words_feat"][i : i + 1, : int(inp["words_mask"][i].sum())]
            video = inp["video_feat"][i : i + 1, :length]
            out = model.localize(
                model.encode_text(words),
                model.encode_videos(video, torch.ones(1, length, dtype=torch.bool)),
            )
            torch.testing.assert_close(out["pred_logits"][0], expected["pred_logits"][i])
            torch.testing.assert_close(out["pred_spans"][0], expected["pred_spans"][i])
            torch.testing.assert_close(
                out["saliency_scores"][0], expected["saliency_scores"][i, :length]
            )
        # All rows in one padded batch: padding changes nothing without the official masks.
        batched = model(
            inp["video_feat"],
            inp["video_mask"],
            inp["words_feat"],
            inp["words_mask"],
            with_negative=False,
            official_masks=False,
        )
    torch.testing.assert_close(batched["pred_spans"], expected["pred_spans"])
    torch.testing.assert_close(batched["pred_logits"], expected["pred_logits"])
    vm = inp["video_mask"]
    torch.testing.assert_close(batched["saliency_scores"][vm], expected["saliency_scores"][vm])


# ---------------------------------------------------------------------------- forward


def _tiny(**changes: object) -> MesmConfig:
    base = MesmConfig(
        v_feat_dim=18, t_feat_dim=12, hidden_dim=16, nheads=4, dim_feedforward=24,
        max_v_l=10, max_q_l=6, vocab_size=20, name="tiny",
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


def _batch(b: int, lv: int = 10, lw: int = 6, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    video = torch.randn(b, lv, 18, generator=gen)
    video_mask = torch.ones(b, lv, dtype=torch.bool)
    words = nnf.normalize(torch.randn(b, lw, 12, generator=gen), dim=-1)
    words_mask = torch.ones(b, lw, dtype=torch.bool)
    if b > 1:
        video_mask[1, lv - 3 :] = False
        words_mask[1, lw - 2 :] = False
    return video, video_mask, words * words_mask[..., None], words_mask


def test_single_video_batch_has_no_negative_term() -> None:
    model = build_model(_tiny(), seed=0)
    video, vm, words, wm = _batch(1)
    out = model(video, vm, words, wm)
    assert out["pred_logits"].shape == (1, 10, 2)
    assert out["pred_spans"].shape == (1, 10, 2)
    assert out["saliency_scores"].shape == (1, 10)
    assert "neg_saliency_scores" not in out
    assert len(out["aux_outputs"]) == 1
    spans = out["pred_spans"]
    assert bool(((spans >= 0) & (spans <= 1)).all())
    # two rows of the same video group: still no other group to draw a negative from
    video, vm, words, wm = _batch(2)
    out = model(video, vm, words, wm, torch.tensor([2]))
    assert "neg_saliency_scores" not in out
    out = model(video, vm, words, wm, torch.tensor([1, 1]))
    assert out["neg_saliency_scores"].shape == (2, 10)
    assert out["neg_index"].tolist() == [1, 0]


def test_training_step_runs_with_one_video() -> None:
    model = build_model(_tiny(), seed=0).train()
    video, vm, words, wm = _batch(1)
    clip_mask = torch.zeros(1, 10, dtype=torch.bool)
    clip_mask[0, 2:5] = True
    out = model(video, vm, words, wm, clip_mask=clip_mask, generator=torch.Generator())
    assert out["recfw_words_logit"].shape == (1, 6, 23)
    assert int(out["recfw_masked"].sum()) == 2  # max(6 // 3, 1)
    loss = out["pred_spans"].sum() + out["recfw_words_logit"].logsumexp(-1).sum()
    loss.backward()
    assert model.span_embed.layers[0].weight.grad is not None


def test_batch_rows_are_independent_without_the_official_masks() -> None:
    model = build_model(_tiny(ss_video="row"), seed=1)
    video, vm, words, wm = _batch(3, seed=2)
    with torch.no_grad():
        full = model(video, vm, words, wm, with_negative=False, official_masks=False)
        alone = model(video[1:2], vm[1:2], words[1:2], wm[1:2], official_masks=False)
    torch.testing.assert_close(full["pred_spans"][1], alone["pred_spans"][0])
    torch.testing.assert_close(full["saliency_scores"][1, :7], alone["saliency_scores"][0, :7])


def test_bad_inputs_raise_input_errors() -> None:
    model = build_model(_tiny(), seed=0)
    video, vm, words, wm = _batch(2)
    with pytest.raises(InputError, match="group_sizes"):
        model(video, vm, words, wm, torch.tensor([1, 2]))
    with pytest.raises(InputError, match="video_feat must be"):
        model(video[..., :5], vm, words, wm)
    vm_empty = vm.clone()
    vm_empty[0] = False
    with pytest.raises(InputError, match="at least one valid clip"):
        model(video, vm_empty, words, wm)
    with pytest.raises(InputError, match="two video groups"):
        sample_negative_rows(torch.tensor([0, 0]))


def test_negative_rows_come_from_other_groups() -> None:
    groups = torch.tensor([0, 0, 1, 2, 2, 2])
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(50):
        neg = sample_negative_rows(groups, gen)
        assert bool((groups[neg] != groups).all())
        seen.update(neg.tolist())
    assert seen == set(range(6))


def test_mask_words_follows_the_counts_and_weights() -> None:
    words_mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0, 0, 0]]).bool()
    weight = torch.tensor([[0, 2, 1, 2, 1, 2, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]]).float()
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        masked = mask_words(words_mask, weight, gen)
        assert masked.sum(1).tolist() == [2, 0]  # 7 // 3; row 2 has no positive weight
        assert not bool((masked & (weight == 0)).any())


def test_the_fast_inference_path_follows_weight_updates_and_copies() -> None:
    """No-grad CPU inference packs weights for oneDNN; updates and copies stay correct."""
    model = build_model(_tiny(ss_video="row"), seed=5)
    video, vm, words, wm = _batch(2, seed=6)

    def logits(m: MesmModel, grad: bool) -> torch.Tensor:
        with torch.set_grad_enabled(grad):
            out = m.localize(m.encode_text(words, wm), m.encode_videos(video, vm))
        return out["pred_logits"].detach()

    before = logits(model, grad=False)  # packs
    torch.testing.assert_close(before, logits(model, grad=True), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.1)  # an optimiser step, in place
    after = logits(model, grad=False)
    assert not torch.allclose(after, before, atol=1e-4)
    torch.testing.assert_close(after, logits(model, grad=True), atol=1e-5, rtol=1e-5)
    clone = copy.deepcopy(model)
    torch.save(model, io.BytesIO())
    torch.testing.assert_close(logits(clone, grad=False), after)
