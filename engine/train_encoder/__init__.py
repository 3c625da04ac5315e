"""`vtr train encoder`: a small CLIP-style encoder and level heads trained on the synth world.

No pretrained weights can be downloaded here, so vtr trains its own small model on the
world `vtr synth` generates (engine/synth): an open_clip ResNet + text transformer aligned at
several levels (clip frame, action window, whole video; multi-level alignment for
video-text retrieval), with entity and action concept losses (MCSAN-style focal BCE), a
pose loss (each object's place, size and turn read back from its clip embedding), a
counterfactual loss (an event's windows against sentences with another action or another
object, and against themselves played backwards), and the level heads `index.level_heads`
serves as the `trained` level strategy.

- `data`: decoded + preprocessed clip frames cached as uint8, sentences, concept and
  pose labels drawn from the corpus plan (the ground truth).
- `model`: the model, the level heads, the reduced token vocabulary, checkpoint I/O.
- `losses`: multi-positive InfoNCE, soft-target cross-entropy, focal BCE, masked MSE.
- `train`: the two-stage training loop.
- `evaluate`: text->video and text->moment recall on a held-out corpus.

    vtr synth --videos 120 --out synth-train --seed 0
    vtr train encoder --data synth-train --out enc.pt --epochs 8 --seed 0 --eval-data synth-eval

engine/models/README.md has the exact commands behind the shipped `vtr-synth-s` and
`vtr-synth-s4`.
"""
