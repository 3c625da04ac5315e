"""Test media: real, deterministic video files written with PyAV, and broken inputs.

`make_video` writes a short clip whose frames are a known function of time, so a test
can check that decoding picked the right frames: by default each second has its own
solid colour (`colour_at`). Codecs: "h264" (libx264; .mp4/.mov/.mkv), "mpeg4" (.avi),
"vp9" (libvpx-vp9; .webm); `codec_available` tells whether this FFmpeg build can encode
one (tests skip cleanly when not). Helpers below write broken inputs: truncated files,
non-video bytes, empty files, audio-only files, a container with zero video frames.

    from tests.media import make_video
    make_video(tmp_path / "a.mp4", seconds=4.0, fps=10)
"""

from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import av.video.stream
import numpy as np

Pattern = Callable[[float], np.ndarray]  # t (s) -> (H, W, 3) uint8 RGB

# Saturated, well separated colours that survive yuv420p compression.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 30, 30),  # red
    (30, 200, 30),  # green
    (30, 30, 230),  # blue
    (230, 230, 30),  # yellow
    (220, 30, 220),  # magenta
    (30, 220, 220),  # cyan
    (240, 240, 240),  # white
    (20, 20, 20),  # black
)

ENCODERS = {"h264": "libx264", "mpeg4": "mpeg4", "vp9": "libvpx-vp9"}


def colour_at(t: float) -> tuple[int, int, int]:
    """The default pattern's colour at time `t` (s): one palette entry per whole second."""
    return PALETTE[int(np.floor(t + 1e-9)) % len(PALETTE)]


def colour_per_second(size: tuple[int, int]) -> Pattern:
    """Solid frames of `colour_at(t)`; `size` is (width, height)."""
    width, height = size

    def pattern(t: float) -> np.ndarray:
        return np.broadcast_to(np.array(colour_at(t), np.uint8), (height, width, 3)).copy()

    return pattern


def corner_marker(size: tuple[int, int]) -> Pattern:
    """`colour_per_second` with a white block in the top-left quarter (orientation tests)."""
    base = colour_per_second(size)
    width, height = size

    def pattern(t: float) -> np.ndarray:
        frame = base(t)
        frame[: height // 2, : width // 2] = 255
        return frame

    return pattern


def codec_available(codec: str) -> bool:
    """Whether this FFmpeg build can encode `codec` ("h264", "mpeg4", "vp9")."""
    name = ENCODERS.get(codec, codec)
    try:
        av.Codec(name, "w")
    except ValueError:  # unknown, or decode-only in this build
        return False
    return True


def make_video(
    path: Path,
    seconds: float = 4.0,
    fps: float = 10,
    size: tuple[int, int] = (96, 64),
    codec: str = "h264",
    pattern: Pattern | None = None,
    rotation: int | None = None,
    *,
    frame_times: Sequence[float] | None = None,
    rotate_tag: int | None = None,
    b_frames: bool = True,
    gop: int | None = None,
    faststart: bool = False,
    encoder_options: dict[str, str] | None = None,
) -> Path:
    """Write a video of `seconds` at `fps` (frames at k / fps) and return `path`.

    The container follows the suffix of `path`. `size` is (width, height) of the coded
    frames. `pattern(t)` gives the frame shown at t seconds (default: `colour_per_second`).
    `rotation` (clockwise degrees, the `rotate` tag's sense: a player turns the coded frames
    this far clockwise to show them) is stored as a display matrix; `rotate_tag` writes the
    legacy `rotate` stream tag instead, which Matroska keeps as plain metadata.
    `frame_times` (s, increasing) overrides the regular grid: variable frame rate, with a
    millisecond time base. `b_frames=False` turns B-frames off (h264). `gop` sets the
    keyframe interval in frames. `faststart` moves the mp4 index to the front.
    `encoder_options` go to the codec (e.g. {"preset": "ultrafast"} for libx264).
    """
    width, height = size
    pattern = pattern or colour_per_second(size)
    times = (
        list(frame_times)
        if frame_times is not None
        else [k / fps for k in range(round(seconds * fps))]
    )
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(
            ENCODERS.get(codec, codec),
            rate=Fraction(fps).limit_denominator(1001),
            options=encoder_options or {},
        )
        if not isinstance(stream, av.video.stream.VideoStream):
            raise ValueError(f"{codec!r} is not a video codec")
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if not b_frames:
            stream.max_b_frames = 0
        if gop is not None:
            stream.gop_size = gop
        time_base = Fraction(1, 1000) if frame_times is not None else None
        if time_base is not None:
            stream.codec_context.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(-rotation)  # PyAV takes counter-clockwise degrees
        if rotate_tag is not None:
            stream.metadata["rotate"] = str(rotate_tag)
        for k, t in enumerate(times):
            image = pattern(t)
            if image.shape != (height, width, 3) or image.dtype != np.uint8:
                raise ValueError(
                    f"pattern gave {image.shape} {image.dtype}, not ({height}, {width}, 3) uint8"
                )
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if time_base is not None:
                frame.pts, frame.time_base = round(t * 1000), time_base
            else:
                frame.pts = k
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def make_vfr_video(path: Path, b_frames: bool = False) -> tuple[Path, list[float]]:
    """A 4 s h264 mp4 with irregular frame times; returns (path, frame times in s)."""
    times = [0.0, 0.05, 0.3, 0.35, 0.9, 1.0, 1.05, 1.6, 2.5, 2.55, 2.6, 3.2, 3.9]
    return make_video(path, codec="h264", frame_times=times, b_frames=b_frames), times


def truncate_file(src: Path, dst: Path, keep: float = 0.5) -> Path:
    """Copy the first `keep` fraction of `src`'s bytes to `dst`."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def write_garbage(path: Path, n_bytes: int = 4096, seed: int = 0) -> Path:
    """Random bytes that no demuxer recognises."""
    path.write_bytes(b"not a video\n" + np.random.default_rng(seed).bytes(n_bytes))
    return path


def write_empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def make_audio_only(path: Path, seconds: float = 1.0, sample_rate: int = 16000) -> Path:
    """An AAC file (.m4a/.mp4) with a sine tone and no video stream."""
    samples_per_frame = 1024
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=sample_rate)
        n_frames = int(np.ceil(seconds * sample_rate / samples_per_frame))
        for i in range(n_frames):
            t = (np.arange(samples_per_frame) + i * samples_per_frame) / sample_rate
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]  # (1, samples)
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = sample_rate, i * samples_per_frame
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def make_zero_frame_video(path: Path) -> Path:
    """An AVI whose header declares an mpeg4 video stream that holds no frames."""
    if path.suffix.lower() != ".avi":
        raise ValueError("zero-frame videos are written as .avi (other muxers drop the stream)")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        container.start_encoding()
    return path
