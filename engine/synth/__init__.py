"""The generated video world behind `vtr synth`: a small, honest benchmark with exact truth.

Videos of shapes on backdrops doing actions over time, rendered to real mp4 files, with
QVHighlights-format annotations whose every query has exactly one correct moment in its
corpus. `world` plans (no I/O), `phrasing` words the queries, `render` draws and writes.

    from engine.synth import generate_corpus, plan_corpus, render_video
    manifest = generate_corpus(Path("synth"), n_videos=20, seed=0)
    corpus = plan_corpus(n_videos=20, seed=0)   # the same world, nothing rendered
"""

from engine.synth.render import (
    CorpusManifest,
    FrameRenderer,
    VideoFile,
    generate_corpus,
    load_world,
    render_video,
    write_annotations,
    write_world,
)
from engine.synth.world import (
    CorpusPlan,
    Event,
    SceneObject,
    SynthQuery,
    Timeline,
    VideoPlan,
    annotation_rows,
    corpus_from_dict,
    plan_corpus,
)

__all__ = [
    "CorpusManifest",
    "CorpusPlan",
    "Event",
    "FrameRenderer",
    "SceneObject",
    "SynthQuery",
    "Timeline",
    "VideoFile",
    "VideoPlan",
    "annotation_rows",
    "corpus_from_dict",
    "generate_corpus",
    "load_world",
    "plan_corpus",
    "render_video",
    "write_annotations",
    "write_world",
]
