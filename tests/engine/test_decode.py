"""Decoding real generated files: clip counts, timing, colours, resize, rotation, VFR, errors."""

import math
from pathlib import Path

import numpy as np
import pytest

from engine.decode import DecodeStats, VideoInfo, iter_clips, n_clips_for, probe
from engine.errors import DecodeError, InputError
from tests.media import (
    codec_available,
    colour_at,
    corner_marker,
    make_audio_only,
    make_vfr_video,
    make_video,
    make_zero_frame_video,
    truncate_file,
    write_empty,
    write_garbage,
)

CONTAINERS = [
    ("h264", "mp4"),
    ("h264", "mkv"),
    ("mpeg4", "avi"),
    ("vp9", "webm"),
]
COLOUR_TOLERANCE = 25  # per channel, after yuv420p compression and scaling


def assert_colours(clip_frames: np.ndarray, times_s: np.ndarray) -> None:
    for frame, t in zip(clip_frames, times_s, strict=True):
        mean = frame.reshape(-1, 3).mean(axis=0)
        expected = np.array(colour_at(float(t)), float)
        assert np.abs(mean - expected).max() < COLOUR_TOLERANCE, (t, mean, expected)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.mark.parametrize(("codec", "ext"), CONTAINERS)
def test_each_container_decodes_to_the_right_clips(media: Path, codec: str, ext: str) -> None:
    if not codec_available(codec):
        pytest.skip(f"this FFmpeg build cannot encode {codec}")
    path = make_video(media / f"five.{ext}", seconds=5.0, fps=10, size=(96, 64), codec=codec)

    info = probe(path)
    assert isinstance(info, VideoInfo)
    assert info.duration_s == pytest.approx(5.0, abs=0.05)
    assert info.fps == pytest.approx(10.0)
    assert (info.width, info.height, info.rotation_deg) == (96, 64, 0)
    assert info.n_frames_estimate == 50
    assert info.codec == {"h264": "h264", "mpeg4": "mpeg4", "vp9": "vp9"}[codec]

    clips = list(iter_clips(path, clip_seconds=2.0, frames_per_clip=1, short_side=32))
    assert [c.index for c in clips] == [0, 1, 2]  # ceil(5 / 2): the partial clip counts
    assert [c.start_s for c in clips] == [0.0, 2.0, 4.0]
    assert [c.end_s for c in clips] == pytest.approx([2.0, 4.0, 5.0], abs=0.05)
    for clip in clips:
        assert clip.frames.shape == (1, 32, 48, 3)
        assert clip.frames.dtype == np.uint8
        centre = (clip.start_s + clip.end_s) / 2
        assert abs(clip.times_s[0] - centre) <= 0.05 + 1e-9  # nearest frame on a 0.1 s grid
        assert_colours(clip.frames, clip.times_s)


def test_frames_at_sub_interval_centres(media: Path) -> None:
    path = make_video(media / "fpc.mp4", seconds=4.0, fps=10)
    clips = list(iter_clips(path, clip_seconds=2.0, frames_per_clip=4, short_side=16))
    assert len(clips) == 2
    for clip in clips:
        assert clip.frames.shape == (4, 16, 24, 3)
        targets = clip.start_s + (np.arange(4) + 0.5) * 0.5
        assert np.all(np.abs(clip.times_s - targets) <= 0.05 + 1e-9)
        assert np.all(np.diff(clip.times_s) > 0)
        assert_colours(clip.frames, clip.times_s)
    # second 0 is red, second 1 green: a clip holds both
    assert colour_at(clips[0].times_s[0]) != colour_at(clips[0].times_s[-1])


def test_more_frames_per_clip_than_the_clip_holds_repeats_nearest(media: Path) -> None:
    path = make_video(media / "slow.mp4", seconds=4.0, fps=1)
    clips = list(iter_clips(path, clip_seconds=2.0, frames_per_clip=4, short_side=16))
    assert len(clips) == 2
    assert clips[0].times_s.tolist() == [0.0, 1.0, 1.0, 2.0]  # nearest to .25 .75 1.25 1.75
    assert_colours(clips[0].frames, clips[0].times_s)


@pytest.mark.parametrize(
    ("size", "short_side", "expected_hw"),
    [
        ((96, 64), 48, (48, 72)),
        ((96, 64), None, (64, 96)),
        ((64, 96), 32, (48, 32)),
        ((96, 64), 128, (128, 192)),  # upscaled too: the encoder expects its size
    ],
)
def test_short_side_resize_keeps_aspect(
    media: Path, size: tuple[int, int], short_side: int | None, expected_hw: tuple[int, int]
) -> None:
    path = make_video(media / f"size-{size[0]}x{size[1]}.mp4", seconds=2.0, size=size)
    clip = next(iter_clips(path, short_side=short_side))
    assert clip.frames.shape[1:3] == expected_hw


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_from_display_matrix_is_applied(media: Path, rotation: int) -> None:
    size = (96, 64)
    pattern = corner_marker(size)
    path = make_video(media / f"rot{rotation}.mp4", seconds=2.0, pattern=pattern, rotation=rotation)
    info = probe(path)
    assert info.rotation_deg == rotation
    assert (info.width, info.height) == ((64, 96) if rotation % 180 else (96, 64))

    clip = next(iter_clips(path, short_side=None))
    # a player turns the coded picture `rotation` degrees clockwise (np.rot90 turns anti-clockwise)
    expected = np.rot90(pattern(float(clip.times_s[0])), k=-rotation // 90)
    assert clip.frames[0].shape == expected.shape
    assert np.abs(clip.frames[0].astype(int) - expected.astype(int)).mean() < 8


def test_rotation_from_legacy_rotate_tag(media: Path) -> None:
    pattern = corner_marker((96, 64))
    path = make_video(media / "tag.mkv", seconds=2.0, pattern=pattern, rotate_tag=90)
    assert probe(path).rotation_deg == 90
    frame = next(iter_clips(path, short_side=None)).frames[0]
    assert frame.shape == (96, 64, 3)
    assert frame[:10, -10:].min() > 200  # the white top-left marker is now top-right
    assert frame[:10, :10].max() < 240


@pytest.mark.parametrize("b_frames", [False, True])
def test_variable_frame_rate_picks_nearest_presentation_time(media: Path, b_frames: bool) -> None:
    path, times = make_vfr_video(media / f"vfr-{b_frames}.mp4", b_frames=b_frames)
    clips = list(iter_clips(path, clip_seconds=2.0, frames_per_clip=4, short_side=16))
    # With B-frames the muxer under-reports the duration (about 3 s); frames to 3.9 s still
    # make the second clip a full one.
    assert len(clips) == 2
    assert clips[-1].end_s == pytest.approx(4.0, abs=0.35)
    grid = np.array(times)
    for clip in clips:
        targets = clip.start_s + (np.arange(4) + 0.5) * 0.5
        expected = [grid[np.argmin(np.abs(grid - t))] for t in targets]
        assert clip.times_s == pytest.approx(expected, abs=1e-3)
        assert_colours(clip.frames, clip.times_s)


def test_sparse_sampling_seeks_and_decodes_fewer_frames(media: Path) -> None:
    path = make_video(media / "long.mp4", seconds=40.0, fps=10, size=(64, 48), gop=10)
    sequential, seeking = DecodeStats(), DecodeStats()
    straight = list(iter_clips(path, 10.0, 1, 16, seek_gap_s=math.inf, stats=sequential))
    sought = list(iter_clips(path, 10.0, 1, 16, seek_gap_s=1.0, stats=seeking))
    assert sequential.seeks == 0
    assert seeking.seeks >= 3
    assert seeking.frames_decoded * 5 < sequential.frames_decoded
    assert sequential.frames_converted == seeking.frames_converted == 4  # only chosen frames
    assert [c.times_s.tolist() for c in sought] == [c.times_s.tolist() for c in straight]
    for a, b in zip(sought, straight, strict=True):
        np.testing.assert_array_equal(a.frames, b.frames)


def test_n_clips_counts_the_partial_last_clip() -> None:
    assert n_clips_for(4.0, 2.0) == 2
    assert n_clips_for(4.0 + 1e-9, 2.0) == 2  # float noise does not make an empty clip
    assert n_clips_for(4.1, 2.0) == 3
    assert n_clips_for(0.5, 2.0) == 1


def _missing(path: Path) -> Path:
    return path


def _truncated_mp4(path: Path) -> Path:
    return truncate_file(make_video(path.with_name("whole.mp4")), path, keep=0.5)


def _truncated_faststart_mp4(path: Path) -> Path:
    whole = make_video(path.with_name("whole-fs.mp4"), seconds=6.0, faststart=True)
    return truncate_file(whole, path, keep=0.9)  # index intact, the last frames gone


def _truncated_webm(path: Path) -> Path:
    whole = make_video(path.with_name("whole.webm"), seconds=6.0, codec="vp9")
    return truncate_file(whole, path, keep=0.4)


@pytest.mark.parametrize(
    ("name", "make", "problem"),
    [
        ("missing.mp4", _missing, "no such file"),
        ("garbage.mp4", write_garbage, "not a readable media container"),
        ("empty.mp4", write_empty, "empty"),
        ("audio.m4a", make_audio_only, "no video stream (streams: audio)"),
        ("noframes.avi", make_zero_frame_video, "no decodable frames"),
        ("cut.mp4", _truncated_mp4, "not a readable media container"),
        ("cut-faststart.mp4", _truncated_faststart_mp4, "truncated: frames end at"),
        ("cut.webm", _truncated_webm, "truncated: frames end at"),
    ],
)
def test_broken_inputs_raise_decode_error(
    tmp_path: Path, name: str, make: object, problem: str
) -> None:
    if name.endswith(".webm") and not codec_available("vp9"):
        pytest.skip("no vp9 encoder")
    path = tmp_path / name
    make(path)  # type: ignore[operator]
    with pytest.raises(DecodeError, match=r"^cannot decode ") as caught:
        list(iter_clips(path, short_side=16))
    assert str(path) in str(caught.value)
    assert problem in str(caught.value)
    assert caught.value.code == "decode_error"
    if not name.startswith("cut"):  # the header alone shows these
        with pytest.raises(DecodeError, match=problem.split(" (")[0]):
            probe(path)


def test_a_directory_is_not_a_video(tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match="directory"):
        probe(tmp_path)


@pytest.mark.parametrize("kwargs", [{"clip_seconds": 0}, {"frames_per_clip": 0}, {"short_side": 0}])
def test_bad_arguments_are_input_errors(media: Path, kwargs: dict[str, float]) -> None:
    path = make_video(media / "args.mp4", seconds=1.0)
    with pytest.raises(InputError):
        list(iter_clips(path, **kwargs))  # type: ignore[arg-type]
