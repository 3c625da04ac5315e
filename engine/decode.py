"""Video decoding with PyAV: probe a file, then sample frames clip by clip.

A video is cut into clips of `clip_seconds` (the last, partial clip counts too:
n_clips = ceil(duration / clip_seconds)). From each clip `frames_per_clip` frames are
taken at the centres of equal sub-intervals, by presentation time: for each target time
the decoded frame with the nearest timestamp, so variable-frame-rate files come out right.
With `motion_gap_s` > 0 each of those frames is followed by the frame nearest
`motion_gap_s` later (at most the video's end), the input of a motion image tower.
Chosen frames are scaled in libswscale (`frame.reformat`) so the shortest side is
`short_side` (aspect kept, sample aspect ratio applied) and turned upright from the
display matrix (or the legacy `rotate` tag).

Only chosen frames are converted to RGB. When the next target lies far ahead (its
keyframe more than `seek_gap_s` past the decoder's position) the decoder seeks to that
keyframe instead of decoding the gap; `bench/decode_seek.py` measures the cut-over.
Every failure (missing file, not a video, no video stream, no decodable frame, truncated
or corrupt data) raises `DecodeError` naming the file and the problem.

    from engine.decode import probe, iter_clips
    info = probe(path)
    for clip in iter_clips(path, clip_seconds=2.0, frames_per_clip=1, short_side=224): ...
"""

import logging
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.container
import av.stream
import av.video.stream
import numpy as np

from engine.errors import DecodeError, InputError

log = logging.getLogger(__name__)

# Seek when the keyframe before the next target is more than this past the decoder's
# position (seconds). bench/decode_seek.py (640x360 h264, 25 fps, 2 CPU cores): a seek
# plus its first frame costs about as much as decoding 15 frames (~0.6 s of video), and
# with 1 s keyframes and 2 s clips seeking took 0.49-0.56 s against 1.74 s straight through.
DEFAULT_SEEK_GAP_S = 1.0


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` learns from a file's header and first frame."""

    duration_s: float
    fps: float
    width: int  # as displayed: rotation applied (sample aspect ratio not)
    height: int
    rotation_deg: int  # clockwise turn shown upright: 0, 90, 180 or 270 (`rotate` tag sense)
    n_frames_estimate: int
    codec: str


@dataclass(frozen=True)
class ClipFrames:
    """The frames sampled from one clip."""

    index: int
    start_s: float
    end_s: float
    frames: np.ndarray  # (F, H, W, 3) uint8 RGB, upright; F = frames_per_clip (x 2: pairs)
    times_s: np.ndarray  # (F,) float64, presentation time of each frame


@dataclass
class DecodeStats:
    """Counters filled by `iter_clips` (tests and benchmarks read them)."""

    frames_decoded: int = 0
    frames_converted: int = 0
    seeks: int = 0
    packets_read: int = 0


@dataclass(frozen=True)
class _Timing:
    time_base: Fraction
    start_pts: int  # presentation timestamps are measured from here
    duration_s: float | None  # declared by the stream or container; None when neither does
    fps: float | None


def _fail(path: Path, problem: str) -> DecodeError:
    return DecodeError(f"cannot decode {path}: {problem}")


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise _fail(path, "no such file")
    if path.is_dir():
        raise _fail(path, "is a directory, not a video file")
    if path.stat().st_size == 0:
        raise _fail(path, "the file is empty")
    try:
        return av.open(str(path), "r", metadata_errors="ignore")
    except av.FFmpegError as e:
        raise _fail(path, f"not a readable media container ({e.strerror or e})") from e


def _video_stream(
    container: av.container.InputContainer, path: Path
) -> av.video.stream.VideoStream:
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:  # skip cover art
            stream.thread_type = "AUTO"
            return stream
    kinds = ", ".join(sorted({str(s.type) for s in container.streams})) or "none"
    raise _fail(path, f"no video stream (streams: {kinds})")


def _tag(stream: av.stream.Stream, name: str) -> str | None:
    for key, value in stream.metadata.items():
        if key.lower() == name:
            return value
    return None


def _parse_clock(value: str) -> float | None:
    """'HH:MM:SS.fraction' (Matroska's per-stream DURATION tag) -> seconds."""
    try:
        hours, minutes, seconds = value.strip().split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def _timing(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> _Timing:
    time_base = stream.time_base or Fraction(1, 1_000_000)
    if stream.start_time is not None:
        start_pts = stream.start_time
    elif container.start_time is not None:
        start_pts = round(container.start_time / 1_000_000 / time_base)
    else:
        start_pts = 0
    duration_s: float | None = None
    if stream.duration:
        duration_s = float(stream.duration * time_base)
    elif (tag := _tag(stream, "duration")) is not None:
        duration_s = _parse_clock(tag)
    if not duration_s and container.duration:
        duration_s = container.duration / 1_000_000
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else None
    return _Timing(time_base, start_pts, duration_s or None, fps)


def _rotation_ccw(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> int:
    """Counter-clockwise quarter turns (0-3) that show `frame` upright."""
    degrees = frame.rotation  # display matrix, counter-clockwise degrees
    if not degrees:
        tag = _tag(stream, "rotate")  # legacy tag: clockwise degrees
        if tag is not None:
            try:
                degrees = -round(float(tag))
            except ValueError:
                degrees = 0
    return round(degrees / 90) % 4


class _Reader:
    """Frames of one stream in presentation order, with seeking and counters."""

    def __init__(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        timing: _Timing,
        path: Path,
        stats: DecodeStats,
    ) -> None:
        self.container, self.stream, self.timing = container, stream, timing
        self.path, self.stats = path, stats
        self._packets = container.demux(stream)
        self._buffered: deque[av.Packet] = deque()
        self._frames: deque[av.VideoFrame] = deque()
        self._drained = False
        self.last_time_s = -math.inf  # time of the last frame returned
        self.max_start_s = -math.inf  # latest presentation time among packets read

    def time_of(self, pts: int | None) -> float:
        if pts is None:  # no timestamp: one nominal frame after the previous one
            if self.last_time_s == -math.inf:
                return 0.0
            return self.last_time_s + (1.0 / self.timing.fps if self.timing.fps else 0.0)
        return float((pts - self.timing.start_pts) * self.timing.time_base)

    def _where(self) -> str:
        if self.last_time_s == -math.inf:
            return "before the first frame"
        return f"after {self.last_time_s:.2f} s"

    def _demux(self) -> av.Packet | None:
        try:
            packet = next(self._packets, None)
        except av.FFmpegError as e:
            raise _fail(self.path, f"corrupt data {self._where()} ({e})") from e
        if packet is not None:
            self.stats.packets_read += 1
            if packet.pts is not None:
                self.max_start_s = max(self.max_start_s, self.time_of(packet.pts))
        return packet

    def _next_packet(self) -> av.Packet | None:
        return self._buffered.popleft() if self._buffered else self._demux()

    def next_frame(self) -> tuple[float, av.VideoFrame] | None:
        """The next decoded frame and its time (s), or None at the end of the stream."""
        while not self._frames:
            if self._drained:
                return None
            packet = self._next_packet()
            if packet is None or packet.size == 0:
                self._drained = True  # an empty packet (or none) drains the decoder
            try:
                frames = self.stream.decode(packet if packet is not None else None)
            except av.FFmpegError as e:
                raise _fail(self.path, f"corrupt data {self._where()} ({e})") from e
            self._frames.extend(frames)
        frame = self._frames.popleft()
        self.stats.frames_decoded += 1
        self.last_time_s = self.time_of(frame.pts)
        return self.last_time_s, frame

    def keyframe_before(self, time_s: float) -> float | None:
        """Time of the last indexed keyframe at or before `time_s`, None without an index."""
        entries = self.stream.index_entries
        if len(entries) < 2:
            return None
        pts = self.timing.start_pts + math.floor(time_s / self.timing.time_base)
        i = entries.search_timestamp(pts, backward=True)
        if i < 0:
            return None
        return self.time_of(entries[i].timestamp)

    def seek(self, time_s: float) -> None:
        pts = self.timing.start_pts + math.floor(time_s / self.timing.time_base)
        try:
            self.container.seek(pts, stream=self.stream, backward=True)
        except av.FFmpegError as e:
            raise _fail(self.path, f"cannot seek to {time_s:.2f} s ({e})") from e
        self._packets = self.container.demux(self.stream)
        self._buffered.clear()
        self._frames.clear()
        self._drained = False
        self.stats.seeks += 1

    def last_start_s(self, max_packets: int = 4096) -> float | None:
        """Read ahead up to `max_packets` packets; the latest presentation time read (s).

        The packets are kept and decoded later, so nothing is read twice.
        """
        while len(self._buffered) < max_packets:
            packet = self._demux()
            if packet is None:
                break
            self._buffered.append(packet)
            if packet.size == 0:
                break
        return self.max_start_s if self.max_start_s > -math.inf else None


def _scan_end_s(path: Path) -> float | None:
    """End of the last video packet (s), from reading the whole stream (no decoding)."""
    with _open(path) as container:
        stream = _video_stream(container, path)
        timing = _timing(container, stream)
        end: float | None = None
        try:
            for packet in container.demux(stream):
                if packet.pts is not None:
                    stop = packet.pts + (packet.duration or 0) - timing.start_pts
                    end = max(end or 0.0, float(stop * timing.time_base))
        except av.FFmpegError as e:
            raise _fail(path, f"corrupt data ({e})") from e
        return end


def _scaled_size(
    frame: av.VideoFrame, sar: Fraction | None, short_side: int | None
) -> tuple[int, int]:
    """(width, height) to scale the coded frame to so its display's short side is `short_side`."""
    width = frame.width * float(sar) if sar else float(frame.width)
    height = float(frame.height)
    if short_side is None:
        return round(width), frame.height
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def probe(path: Path | str) -> VideoInfo:
    """Read `path`'s header and decode its first frame; raise DecodeError if unusable."""
    path = Path(path)
    container = _open(path)
    with container:
        stream = _video_stream(container, path)
        timing = _timing(container, stream)
        reader = _Reader(container, stream, timing, path, DecodeStats())
        first = reader.next_frame()
        if first is None:
            raise _fail(path, "the video stream has no decodable frames")
        _, frame = first
        duration_s = timing.duration_s
        if duration_s is None:
            duration_s = _scan_end_s(path)
        if not duration_s:
            raise _fail(path, "cannot tell the duration (no timestamps)")
        quarter_turns = _rotation_ccw(frame, stream)
        width, height = frame.width, frame.height
        if quarter_turns % 2:
            width, height = height, width
        fps = timing.fps or 0.0
        n_frames = stream.frames or round(duration_s * fps)
        if not fps and n_frames:
            fps = n_frames / duration_s
        return VideoInfo(
            duration_s=duration_s,
            fps=fps,
            width=width,
            height=height,
            rotation_deg=(-90 * quarter_turns) % 360,
            n_frames_estimate=n_frames,
            codec=stream.codec_context.name,
        )


def n_clips_for(duration_s: float, clip_seconds: float) -> int:
    """Number of clips of `clip_seconds` covering `duration_s`, the last one partial."""
    return max(1, math.ceil(duration_s / clip_seconds - 1e-6))


def iter_clips(
    path: Path | str,
    clip_seconds: float = 2.0,
    frames_per_clip: int = 1,
    short_side: int | None = 224,
    *,
    seek_gap_s: float = DEFAULT_SEEK_GAP_S,
    stats: DecodeStats | None = None,
    motion_gap_s: float = 0.0,
) -> Iterator[ClipFrames]:
    """Yield each clip of `path` with `frames_per_clip` upright RGB frames (each followed
    by the frame `motion_gap_s` later when that is > 0).

    `short_side=None` keeps the coded size. `seek_gap_s=math.inf` never seeks.
    `stats`, when given, counts decoded and converted frames and seeks.
    """
    if not clip_seconds > 0:
        raise InputError(f"clip_seconds must be > 0, got {clip_seconds}")
    if frames_per_clip < 1:
        raise InputError(f"frames_per_clip must be >= 1, got {frames_per_clip}")
    if not 0.0 <= motion_gap_s < clip_seconds / frames_per_clip:
        raise InputError(
            f"motion_gap_s must be in [0, clip_seconds / frames_per_clip), got {motion_gap_s}"
        )
    if short_side is not None and short_side < 1:
        raise InputError(f"short_side must be >= 1 or None, got {short_side}")
    path = Path(path)
    stats = stats if stats is not None else DecodeStats()
    container = _open(path)
    with container:
        stream = _video_stream(container, path)
        timing = _timing(container, stream)
        duration_s = timing.duration_s
        if duration_s is None:
            duration_s = _scan_end_s(path)
            if duration_s is None:
                raise _fail(path, "the video stream has no decodable frames")
        yield from _clips(
            _Reader(container, stream, timing, path, stats),
            duration_s,
            clip_seconds,
            frames_per_clip,
            short_side,
            seek_gap_s,
            motion_gap_s,
        )


def _clips(
    reader: _Reader,
    duration_s: float,
    clip_seconds: float,
    frames_per_clip: int,
    short_side: int | None,
    seek_gap_s: float,
    motion_gap_s: float,
) -> Iterator[ClipFrames]:
    path, stream = reader.path, reader.stream
    frame_step_s = 1.0 / reader.timing.fps if reader.timing.fps else 0.0
    # At the end of the stream a target may lie this far past the last frame (a held last
    # frame, a duration rounded up); further means frames are missing: a truncated file.
    eof_slack_s = max(0.5 * clip_seconds, 2.0 * frame_step_s)
    sar = stream.sample_aspect_ratio
    n_clips = n_clips_for(duration_s, clip_seconds)
    prev: tuple[float, av.VideoFrame] | None = None
    cur: tuple[float, av.VideoFrame] | None = None
    position_s = 0.0  # time of the last decoded frame (or of the keyframe sought to)
    converted: tuple[av.VideoFrame, np.ndarray] | None = None  # last conversion, reused
    eof = False
    decoded_any = False
    index = 0
    while index < n_clips:
        start_s = index * clip_seconds
        if index == n_clips - 1 and not eof:
            # The stream may hold frames past its declared duration (VFR with B-frames
            # makes muxers under-report it): look at the remaining packets first.
            last_s = reader.last_start_s()
            if last_s is not None and last_s + frame_step_s > duration_s + 1e-3:
                log.debug(
                    "%s: a frame at %.2f s, past the declared %.2f s", path, last_s, duration_s
                )
                duration_s = last_s + frame_step_s
                n_clips = max(n_clips, math.floor(last_s / clip_seconds) + 1)
        end_s = min(start_s + clip_seconds, duration_s)
        step = (end_s - start_s) / frames_per_clip
        targets = [start_s + (j + 0.5) * step for j in range(frames_per_clip)]
        if motion_gap_s > 0:  # a later frame stops at the next key frame or the end
            bounds = [*targets[1:], duration_s]
            targets = [
                t
                for k, b in zip(targets, bounds, strict=True)
                for t in (k, min(k + motion_gap_s, b))
            ]
        arrays: list[np.ndarray] = []
        times: list[float] = []
        for target_s in targets:
            if not eof and (cur is None or cur[0] < target_s):
                keyframe_s = reader.keyframe_before(target_s)
                ahead_s = (keyframe_s if keyframe_s is not None else target_s) - position_s
                if ahead_s > seek_gap_s:
                    reader.seek(target_s)  # lands on the keyframe at or before it
                    position_s = keyframe_s if keyframe_s is not None else target_s
                    prev = cur = None
            while not eof and (cur is None or cur[0] < target_s):
                if cur is not None:
                    prev = cur
                nxt = reader.next_frame()
                if nxt is None:
                    eof = True
                    cur = None
                    break
                cur, decoded_any, position_s = nxt, True, nxt[0]
            candidates = [c for c in (prev, cur) if c is not None]
            if not candidates:
                if not decoded_any:
                    raise _fail(path, "the video stream has no decodable frames")
                raise _fail(path, f"truncated: no frames at {target_s:.2f} s of {duration_s:.2f} s")
            chosen = min(candidates, key=lambda c: (abs(c[0] - target_s), c[0]))
            if eof and target_s - chosen[0] > eof_slack_s:
                raise _fail(
                    path,
                    f"truncated: frames end at {chosen[0]:.2f} s but the file says "
                    f"{duration_s:.2f} s",
                )
            frame = chosen[1]
            if converted is None or converted[0] is not frame:
                converted = (frame, _to_rgb(frame, sar, short_side, stream))
                reader.stats.frames_converted += 1
            arrays.append(converted[1])
            times.append(chosen[0])
        yield ClipFrames(index, start_s, end_s, np.stack(arrays), np.asarray(times))
        index += 1


def _to_rgb(
    frame: av.VideoFrame,
    sar: Fraction | None,
    short_side: int | None,
    stream: av.video.stream.VideoStream,
) -> np.ndarray:
    """One frame -> (H, W, 3) uint8 RGB, scaled and upright."""
    width, height = _scaled_size(frame, sar, short_side)
    rgb = frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA")
    array: np.ndarray = rgb.to_ndarray()  # (height, width, 3)
    quarter_turns = _rotation_ccw(frame, stream)
    if quarter_turns:
        array = np.ascontiguousarray(np.rot90(array, k=quarter_turns))
    return array
