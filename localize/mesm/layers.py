"""MESM building blocks: projections, T2V cross-modal layers, DETR encoder, DAB decoder.

Written from the MESM paper (Liu et al., AAAI 2024) and the layer layout of the official
code (github lntzm/MESM, `model/transformer.py`, `model/attention.py`), which derives from
QD-DETR / Moment-DETR / DAB-DETR. Parameter names and shapes match the official modules
so official checkpoints load with `strict=True`; the computation is the same, written
batch-first on `torch.nn.functional.scaled_dot_product_attention` (the official code is
sequence-first with a hand-written attention; the results agree to float rounding).

Masks: `*_pad` tensors are key-padding masks, True = padding (ignored), as in
`nn.MultiheadAttention`. Every layer is post-norm with a PReLU FFN activation.
"""

import copy
import math
import weakref

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn


def inverse_sigmoid(x: Tensor, eps: float = 1e-3) -> Tensor:
    """logit(x) with x clamped to [eps, 1 - eps], as DAB-DETR does."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def _interleave_sin_cos(angles: Tensor) -> Tensor:
    """(..., n) angles -> (..., n): sin on even slots, cos on odd slots."""
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)


def _inverse_frequencies(n: int, device: torch.device) -> Tensor:
    dim_t = torch.arange(n, dtype=torch.float32, device=device)
    return 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="trunc") / n)  # (n,)


def video_position_embedding(video_mask: Tensor, dim: int) -> Tensor:
    """Sine positions of the valid clips, normalised to (0, 2*pi].

    video_mask: (batch, clips) bool, True = valid. Returns (batch, clips, dim) float32.
    """
    x_embed = video_mask.cumsum(1, dtype=torch.float32)  # (batch, clips)
    x_embed = x_embed / (x_embed[:, -1:] + 1e-6) * (2 * math.pi)
    dim_t = _inverse_frequencies(dim, video_mask.device)  # (dim,)
    return _interleave_sin_cos(x_embed[:, :, None] / dim_t)  # (batch, clips, dim)


def anchor_sine_embedding(anchors: Tensor, dim: int) -> Tensor:
    """(..., 2) sigmoid (centre, width) anchors -> (..., dim): half centre, half width."""
    half = dim // 2
    dim_t = _inverse_frequencies(half, anchors.device)  # (half,)
    scale = 2 * math.pi
    pos_c = _interleave_sin_cos(anchors[..., 0:1] * scale / dim_t)  # (..., half)
    pos_w = _interleave_sin_cos(anchors[..., 1:2] * scale / dim_t)  # (..., half)
    return torch.cat((pos_c, pos_w), dim=-1)  # (..., dim)


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    nheads: int,
    key_pad: Tensor | None,
    extra_mask: Tensor | None = None,
) -> Tensor:
    """Multi-head scaled dot-product attention on already projected inputs.

    q: (batch, Lq, Dq), k: (batch, Lk, Dq), v: (batch, Lk, Dv); key_pad: (batch, Lk) bool,
    True = padding; extra_mask: (batch, heads, Lq, Lk) bool, True = blocked. Returns
    (batch, Lq, Dv). Scale 1/sqrt(Dq / nheads).
    """
    b, lq, dq = q.shape
    lk, dv = k.shape[1], v.shape[2]
    qh = q.reshape(b, lq, nheads, dq // nheads).transpose(1, 2)  # (batch, heads, Lq, dq/h)
    kh = k.reshape(b, lk, nheads, dq // nheads).transpose(1, 2)  # (batch, heads, Lk, dq/h)
    vh = v.reshape(b, lk, nheads, dv // nheads).transpose(1, 2)  # (batch, heads, Lk, dv/h)
    blocked = None if key_pad is None else key_pad[:, None, None, :]  # (batch, 1, 1, Lk)
    if extra_mask is not None:
        blocked = extra_mask if blocked is None else blocked | extra_mask
    mask = None if blocked is None else ~blocked  # True = attend
    out = nnf.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask)  # (batch, heads, Lq, dv/h)
    return out.transpose(1, 2).reshape(b, lq, dv)


def official_batch_mask(
    target_pad: Tensor, source_pad: Tensor, nheads: int, target_index: Tensor | None = None
) -> Tensor:
    """The extra attention mask of the official T2V layers, reproduced.

    The official layer builds `attn_mask = (target_pad x source_pad).repeat(nheads, 1, 1)`,
    a (nheads*batch, Lt, Ls) tensor that `nn.MultiheadAttention` reads batch-major, so
    head h of row b gets the pair mask of row (b * nheads + h) % batch. With padding in
    the batch this blocks some valid keys of other rows; a batch of one is unaffected.
    target_pad (batch, Lt), source_pad (batch, Ls) bool True = padding; `target_index`
    (batch, Lq) selects which target positions are computed (default all).
    Returns (batch, heads, Lq, Ls) bool, True = blocked.
    """
    b = target_pad.shape[0]
    rows = torch.arange(b, device=target_pad.device)
    heads = torch.arange(nheads, device=target_pad.device)
    donor = (rows[:, None] * nheads + heads[None]) % b  # (batch, heads)
    if target_index is None:
        t = target_pad[donor]  # (batch, heads, Lt)
    else:
        t = torch.gather(target_pad[donor], 2, target_index[:, None].expand(b, nheads, -1))
    return t[..., None] & source_pad[donor][:, :, None, :]  # (batch, heads, Lq, Ls)


_MKLDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(
    torch.ops.mkldnn, "_linear_pointwise"
)


# Packed weights per module, outside the module so that deepcopy / pickling of a model
# never meets oneDNN's opaque tensors; a copy repacks on first use.
_PACKED: "weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[int, int, Tensor]]]" = (
    weakref.WeakKeyDictionary()
)


def _fast_path(x: Tensor, weight: Tensor) -> bool:
    return (
        _MKLDNN_LINEAR
        and not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
    )


def _packed(weight: Tensor, owner: nn.Module, key: str) -> Tensor | None:
    """oneDNN-packed copy of `weight`, cached on `owner`; None when it cannot be tracked."""
    try:
        version = weight._version  # inference tensors have no version counter
    except RuntimeError:
        return None
    cache = _PACKED.setdefault(owner, {})
    entry = cache.get(key)
    if entry is None or entry[:2] != (version, weight.data_ptr()):
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 1)
        entry = (version, weight.data_ptr(), packed)
        cache[key] = entry
    return entry[2]


def fast_linear(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    owner: nn.Module,
    key: str,
    leaky_slope: float | None = None,
) -> Tensor:
    """`F.linear` (then leaky ReLU when `leaky_slope` is given), through oneDNN with a
    prepacked weight when that is exact and faster.

    Used for fp32 inference on CPU (no autograd, no autocast): PyTorch's default fp32
    GEMM (MKL) runs ~2x slower on this project's AMD CPUs than oneDNN with packed
    weights, and both compute in IEEE fp32 (results differ by summation order only).
    The packed copy is kept per `owner` module (outside it, not in its state_dict) and
    rebuilt whenever the weight changes (version counter / storage).
    """
    packed = _packed(weight, owner, key) if _fast_path(x, weight) else None
    if packed is None:
        y = nnf.linear(x, weight, bias)
        return y if leaky_slope is None else nnf.leaky_relu(y, leaky_slope)
    if leaky_slope is None:
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "leaky_relu", [leaky_slope], "")


class Linear(nn.Linear):
    """`nn.Linear` (same parameters and state_dict) with the fast fp32 CPU inference path."""

    def forward(self, x: Tensor) -> Tensor:
        return fast_linear(x, self.weight, self.bias, self, "weight")


def _ffn_hidden(linear1: nn.Linear, activation: nn.PReLU, x: Tensor) -> Tensor:
    """PReLU(linear1(x)); at fp32 CPU inference one fused oneDNN call (a single-slope
    PReLU is a leaky ReLU), otherwise PReLU on a 2-D view (much faster than on 3-D)."""
    if activation.weight.numel() == 1 and _fast_path(x, linear1.weight):
        slope = float(activation.weight)
        return fast_linear(x, linear1.weight, linear1.bias, linear1, "weight", slope)
    y = linear1(x)
    return activation(y.reshape(-1, y.shape[-1])).view(y.shape)


class MLP(nn.Module):
    """`num_layers` Linear layers with ReLU between them (DETR's FFN head)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(Linear(i, o) for i, o in zip(dims_in, dims_out, strict=True))

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = nnf.relu(x)
        return x


class LinearLayer(nn.Module):
    """LayerNorm(in) -> Dropout -> Linear -> optional ReLU (`net.1` is the Linear)."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float, relu: bool):
        super().__init__()
        self.relu = relu
        self.LayerNorm = nn.LayerNorm(in_dim)
        self.net = nn.Sequential(nn.Dropout(dropout), Linear(in_dim, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        x = self.net(self.LayerNorm(x))
        return nnf.relu(x) if self.relu else x


class TrainablePositionalEncoding(nn.Module):
    """Learned text positions. Kept for checkpoint compatibility: MESM does not use it."""

    def __init__(self, max_positions: int, hidden_dim: int, dropout: float):
        super().__init__()
        self.position_embeddings = nn.Embedding(max_positions, hidden_dim)
        self.LayerNorm = nn.LayerNorm(hidden_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        positions = torch.arange(x.shape[1], device=x.device)  # (L,)
        return self.dropout(self.LayerNorm(x + self.position_embeddings(positions)[None]))


class InProjAttention(nn.Module):
    """Parameters of `nn.MultiheadAttention` (packed q/k/v in-projection + out_proj)."""

    def __init__(self, dim: int, nheads: int):
        super().__init__()
        self.nheads = nheads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def project(self, x: Tensor, part: int) -> Tensor:
        """Apply the q (0), k (1) or v (2) in-projection: (..., dim) -> (..., dim)."""
        d = self.out_proj.in_features
        w = self.in_proj_weight[part * d : (part + 1) * d]
        b = self.in_proj_bias[part * d : (part + 1) * d]
        return fast_linear(x, w, b, self, f"in_proj_{part}")

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_pad: Tensor | None) -> Tensor:
        """(batch, Lq, dim), (batch, Lk, dim) x2 -> (batch, Lq, dim)."""
        q = self.project(query, 0)
        k = self.project(key, 1)
        v = self.project(value, 2)
        return self.out_proj(attend(q, k, v, self.nheads, key_pad))


class PlainAttention(nn.Module):
    """DAB-DETR's attention without in-projections: only `out_proj` (vdim -> vdim)."""

    def __init__(self, vdim: int, nheads: int):
        super().__init__()
        self.nheads = nheads
        self.out_proj = Linear(vdim, vdim)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, key_pad: Tensor | None) -> Tensor:
        return self.out_proj(attend(q, k, v, self.nheads, key_pad))


class T2VLayer(nn.Module):
    """Cross-modal layer without self-attention: `target` attends to `source`.

    x = target + drop(attn(q=target+pos_t, k=source+pos_s, v=source))
    out = norm2(x + drop(FFN(norm1(x))))   (FFN = linear1 -> PReLU -> linear2)
    """

    def __init__(self, dim: int, nheads: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.self_attn = InProjAttention(dim, nheads)
        self.linear1 = Linear(dim, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = nn.PReLU()

    def source_kv(self, source: Tensor, source_pos: Tensor | None) -> tuple[Tensor, Tensor]:
        """Projected keys and values of `source` (batch, Ls, dim), reusable across targets."""
        key_in = source if source_pos is None else source + source_pos
        return self.self_attn.project(key_in, 1), self.self_attn.project(source, 2)

    def forward_kv(
        self,
        target: Tensor,
        target_pos: Tensor | None,
        k: Tensor,
        v: Tensor,
        source_pad: Tensor | None,
        extra_mask: Tensor | None = None,
    ) -> Tensor:
        """Layer output for (batch, Lt, dim) targets given projected source keys/values."""
        q_in = target if target_pos is None else target + target_pos
        q = self.self_attn.project(q_in, 0)  # (batch, Lt, dim)
        b = q.shape[0]
        if k.shape[0] != b:  # one shared source for every target row
            k, v = k.expand(b, -1, -1), v.expand(b, -1, -1)
            if source_pad is not None:
                source_pad = source_pad.expand(b, -1)
        attn = self.self_attn.out_proj(
            attend(q, k, v, self.self_attn.nheads, source_pad, extra_mask)
        )
        x = target + self.dropout1(attn)
        y = self.linear2(self.dropout(_ffn_hidden(self.linear1, self.activation, self.norm1(x))))
        return self.norm2(x + self.dropout2(y))

    def forward(
        self,
        target: Tensor,
        target_pos: Tensor | None,
        source: Tensor,
        source_pos: Tensor | None,
        source_pad: Tensor | None,
        extra_mask: Tensor | None = None,
    ) -> Tensor:
        k, v = self.source_kv(source, source_pos)
        return self.forward_kv(target, target_pos, k, v, source_pad, extra_mask)


class T2VEncoder(nn.Module):
    """A stack of `T2VLayer`s (`layers.N.*`): the target is updated, the source is fixed."""

    def __init__(self, layer: T2VLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(
        self,
        target: Tensor,
        target_pos: Tensor | None,
        source: Tensor,
        source_pos: Tensor | None,
        source_pad: Tensor | None,
        extra_mask: Tensor | None = None,
    ) -> Tensor:
        for layer in self.layers:
            target = layer(target, target_pos, source, source_pos, source_pad, extra_mask)
        return target


class T2VBlock(nn.Module):
    """Official wrapper name: `<block>.t2v_encoder.layers.N.*`, xavier-initialised."""

    def __init__(self, dim: int, nheads: int, dim_feedforward: int, dropout: float, layers: int):
        super().__init__()
        self.t2v_encoder = T2VEncoder(T2VLayer(dim, nheads, dim_feedforward, dropout), layers)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(
        self,
        target: Tensor,
        target_pos: Tensor | None,
        source: Tensor,
        source_pos: Tensor | None,
        source_pad: Tensor | None,
        extra_mask: Tensor | None = None,
    ) -> Tensor:
        return self.t2v_encoder(target, target_pos, source, source_pos, source_pad, extra_mask)


class EncoderLayer(nn.Module):
    """Post-norm self-attention layer; q = k = x + pos, v = x."""

    def __init__(self, dim: int, nheads: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.self_attn = InProjAttention(dim, nheads)
        self.linear1 = Linear(dim, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = nn.PReLU()

    def forward(self, x: Tensor, pos: Tensor, pad: Tensor | None) -> Tensor:
        qk = x + pos
        x = self.norm1(x + self.dropout1(self.self_attn(qk, qk, x, pad)))
        y = self.linear2(self.dropout(_ffn_hidden(self.linear1, self.activation, x)))
        return self.norm2(x + self.dropout2(y))


class TransformerEncoder(nn.Module):
    def __init__(self, layer: EncoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, x: Tensor, pos: Tensor, pad: Tensor | None) -> Tensor:
        for layer in self.layers:
            x = layer(x, pos, pad)
        return x


class DecoderLayer(nn.Module):
    """Conditional (DAB-DETR) decoder layer: content/position-split self and cross attention.

    Cross-attention queries and keys are per-head concatenations [content; position], so
    the cross attention runs at width 2*dim with values at width dim.
    """

    def __init__(self, dim: int, nheads: int, dim_feedforward: int, dropout: float, first: bool):
        super().__init__()
        self.nheads = nheads
        self.sa_qcontent_proj = Linear(dim, dim)
        self.sa_qpos_proj = Linear(dim, dim)
        self.sa_kcontent_proj = Linear(dim, dim)
        self.sa_kpos_proj = Linear(dim, dim)
        self.sa_v_proj = Linear(dim, dim)
        self.self_attn = PlainAttention(dim, nheads)
        self.norm1 = nn.LayerNorm(dim)
        self.dropout1 = nn.Dropout(dropout)
        self.ca_qcontent_proj = Linear(dim, dim)
        self.ca_qpos_proj = Linear(dim, dim) if first else None
        self.ca_kcontent_proj = Linear(dim, dim)
        self.ca_kpos_proj = Linear(dim, dim)
        self.ca_v_proj = Linear(dim, dim)
        self.ca_qpos_sine_proj = Linear(dim, dim)
        self.cross_attn = PlainAttention(dim, nheads)
        self.linear1 = Linear(dim, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = nn.PReLU()

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        memory_pad: Tensor | None,
        pos: Tensor,
        query_pos: Tensor,
        query_sine_embed: Tensor,
    ) -> Tensor:
        """tgt (batch, Q, dim), memory/pos (batch, L, dim) -> (batch, Q, dim)."""
        # self-attention among the queries
        q = self.sa_qcontent_proj(tgt) + self.sa_qpos_proj(query_pos)  # (batch, Q, dim)
        k = self.sa_kcontent_proj(tgt) + self.sa_kpos_proj(query_pos)  # (batch, Q, dim)
        v = self.sa_v_proj(tgt)  # (batch, Q, dim)
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, v, None)))

        # cross-attention to the video memory
        b, nq, d = tgt.shape
        length = memory.shape[1]
        h = self.nheads
        q_content = self.ca_qcontent_proj(tgt)  # (batch, Q, dim)
        k_content = self.ca_kcontent_proj(memory)  # (batch, L, dim)
        v = self.ca_v_proj(memory)  # (batch, L, dim)
        k_pos = self.ca_kpos_proj(pos)  # (batch, L, dim)
        if self.ca_qpos_proj is not None:  # first layer: add the positional query/key
            q_content = q_content + self.ca_qpos_proj(query_pos)
            k_content = k_content + k_pos
        q_sine = self.ca_qpos_sine_proj(query_sine_embed)  # (batch, Q, dim)
        q = torch.cat(
            [q_content.view(b, nq, h, d // h), q_sine.view(b, nq, h, d // h)], dim=3
        ).view(b, nq, 2 * d)  # (batch, Q, 2*dim)
        k = torch.cat(
            [k_content.view(b, length, h, d // h), k_pos.view(b, length, h, d // h)], dim=3
        ).view(b, length, 2 * d)  # (batch, L, 2*dim)
        tgt = self.norm2(tgt + self.dropout2(self.cross_attn(q, k, v, memory_pad)))
        y = self.linear2(self.dropout(_ffn_hidden(self.linear1, self.activation, tgt)))
        return self.norm3(tgt + self.dropout3(y))


class TransformerDecoder(nn.Module):
    """DAB-style decoder: anchors (centre, width) refined layer by layer by `bbox_embed`."""

    def __init__(self, dim: int, nheads: int, dim_feedforward: int, dropout: float, layers: int):
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(dim, nheads, dim_feedforward, dropout, first=(i == 0))
            for i in range(layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.query_scale = MLP(dim, dim, dim, 2)
        self.ref_point_head = MLP(dim, dim, dim, 2)
        self.bbox_embed = MLP(dim, dim, 2, 3)
        self.ref_anchor_head = MLP(dim, dim, 1, 2)
        self.dim = dim

    def forward(
        self,
        memory: Tensor,
        memory_pad: Tensor | None,
        pos: Tensor,
        anchors_unsigmoid: Tensor,
        all_layers: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """memory/pos (batch, L, dim), anchors (Q, 2) -> hs (layers, batch, Q, dim) and
        the reference anchors each layer started from (layers, batch, Q, 2).

        `all_layers=False` returns only the last layer (inference needs nothing else).
        """
        b = memory.shape[0]
        nq = anchors_unsigmoid.shape[0]
        output = memory.new_zeros(b, nq, self.dim)  # (batch, Q, dim)
        reference = anchors_unsigmoid.sigmoid()[None].expand(b, nq, 2)  # (batch, Q, 2)
        hs: list[Tensor] = []
        refs: list[Tensor] = []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            sine = anchor_sine_embedding(reference, self.dim)  # (batch, Q, dim)
            query_pos = self.ref_point_head(sine)  # (batch, Q, dim)
            if i > 0:
                sine = sine * self.query_scale(output)
            ref_width = self.ref_anchor_head(output).sigmoid()  # (batch, Q, 1)
            sine = sine * (ref_width[..., 0] / reference[..., 1]).unsqueeze(-1)
            output = layer(output, memory, memory_pad, pos, query_pos, sine)
            if all_layers or i == last:
                hs.append(self.norm(output))
                refs.append(reference)
            if i < last:  # iterative anchor refinement (unused after the last layer)
                delta = self.bbox_embed(output)[..., :2]  # (batch, Q, 2)
                reference = (delta + inverse_sigmoid(reference)).sigmoid().detach()
        return torch.stack(hs), torch.stack(refs)


class MomentTransformer(nn.Module):
    """Encoder over [global token; video] + DAB decoder (`transformer.*` in checkpoints)."""

    def __init__(
        self,
        dim: int,
        nheads: int,
        dim_feedforward: int,
        dropout: float,
        enc_layers: int,
        dec_layers: int,
    ):
        super().__init__()
        self.encoder = TransformerEncoder(
            EncoderLayer(dim, nheads, dim_feedforward, dropout), enc_layers
        )
        self.decoder = TransformerDecoder(dim, nheads, dim_feedforward, dropout, dec_layers)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def encode(
        self,
        video: Tensor,
        video_pad: Tensor | None,
        pos: Tensor,
        global_token: Tensor,
        global_pos: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """video/pos (batch, L, dim); global (dim,) -> memory (batch, L, dim), global (batch, dim).

        The global token is marked as padding in the key mask (as in QD-DETR): it attends
        to the clips but no position attends to it.
        """
        b = video.shape[0]
        g = global_token[None, None].expand(b, 1, -1)  # (batch, 1, dim)
        gp = global_pos[None, None].expand(b, 1, -1)  # (batch, 1, dim)
        x = torch.cat([g, video], dim=1)  # (batch, 1+L, dim)
        p = torch.cat([gp, pos], dim=1)  # (batch, 1+L, dim)
        pad_g = torch.ones(b, 1, dtype=torch.bool, device=video.device)
        if video_pad is None:
            video_pad = torch.zeros(video.shape[:2], dtype=torch.bool, device=video.device)
        pad = torch.cat([pad_g, video_pad], dim=1)  # (batch, 1+L)
        memory = self.encoder(x, p, pad)  # (batch, 1+L, dim)
        return memory[:, 1:].contiguous(), memory[:, 0]  # (batch, L, dim), (batch, dim)
