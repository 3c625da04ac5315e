"""MESM moment localizer (Liu et al., AAAI 2024; official code github lntzm/MESM).

- `config`: `MesmConfig` and presets (qvhighlights, charades, CLIP-only).
- `model`: `MesmModel`, weight-compatible with the official checkpoints.
- `checkpoint`: official checkpoint loading, our own self-describing checkpoints.
- `inference`: `MesmLocalizer`, the `localize.types.Localizer` for search.
"""
