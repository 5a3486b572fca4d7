"""Media files given to or made by the app. Audio and video go through ffmpeg (the binary imageio-ffmpeg ships):
decode any audio to the sample rate a model wants, write WAV with the parameters in its `comment` tag, read that
tag back from any container; encode frames as MP4, WebM, GIF or animated WebP with the parameters embedded, and
read them back. Images are checked from their header before anything decodes them.

libsndfile drops INFO comments longer than about 2 kB, too short for a long text's parameters, hence ffmpeg.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np

log = logging.getLogger(__name__)

FFMPEG_TIMEOUT_S = 600
# A picture's header states its size; refusing big ones before decoding stops decompression bombs.
MAX_IMAGE_PIXELS = 64 * 1024**2
DIGEST_CHUNK_BYTES = 16 * 1024**2


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


class MediaError(ValueError):
    """A file that cannot be read or written. The message names the file by its name alone: an upload's full path is
    a folder of Gradio's (`/tmp/gradio/<hash>/`) and means nothing to the person; ffmpeg's own words go to the log."""


def _run(arguments: list[str], failure: str, stdin: bytes | None = None) -> bytes:
    """ffmpeg's output; MediaError(`failure`) when it fails."""
    done = subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", *arguments], input=stdin, capture_output=True, timeout=FFMPEG_TIMEOUT_S)
    if done.returncode != 0:
        _log_ffmpeg(failure, done)
        raise MediaError(failure)
    return done.stdout


def _log_ffmpeg(failure: str, done: subprocess.CompletedProcess) -> None:
    log.warning("%s; ffmpeg exited with %d: %s", failure, done.returncode, done.stderr.decode(errors="replace").strip()[-2000:])


def image_size(path: Path, name: str | None = None) -> tuple[int, int]:
    """The (width, height) an image file states in its header, read without decoding the pixels; MediaError
    when it is not an image or is bigger than MAX_IMAGE_PIXELS. `name` is how the message names the file (the name
    it was uploaded under; by default the file's own name)."""
    from PIL import Image

    path = Path(path)
    name = name or path.name
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        raise MediaError(f"{name} states a picture too big to read safely") from None
    except (OSError, ValueError, SyntaxError) as error:
        # Pillow's message repeats the full path; the name is what the person knows.
        log.info("%s is not a readable image: %s", path, error)
        raise MediaError(f"{name} is not a readable image (not a picture format this app reads, or damaged)") from None
    if width * height > MAX_IMAGE_PIXELS:
        raise MediaError(
            f"{name} is {width}×{height} pixels; images up to {MAX_IMAGE_PIXELS // 1024**2} megapixels are accepted"
        )
    return width, height


def file_digest(path: Path) -> str:
    """The first 16 hex digits of a file's SHA-256: enough to tell which input a result was made from."""
    return file_sha256(path)[:16]


def input_file_record(path: str | Path | None) -> dict | None:
    """An input file as a result's parameters name it: file name and full SHA-256 (None for no file)."""
    return {"file": Path(path).name, "sha256": file_sha256(path)} if path else None


def file_sha256(path: Path) -> str:
    """A file's SHA-256 in hex (what model sites list for a checkpoint). Remembered per path, size and
    modification time: a LoRA or checkpoint of gigabytes is read once per change, not once per job."""
    path = Path(path).resolve()
    stat = path.stat()
    return _sha256(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _sha256(path: Path, size_bytes: int, mtime_ns: int) -> str:
    # Read in chunks: a checkpoint can be larger than the free RAM.
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(DIGEST_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def read_audio(path: Path, sample_rate: int, max_seconds: float, channels: int = 1) -> np.ndarray:
    """Float32 samples at `sample_rate`, decoded from any format ffmpeg knows: shape (samples,) for mono,
    (samples, channels) otherwise (ffmpeg up- or down-mixes). At most `max_seconds` plus one sample, so a
    caller can tell "too long" from "exactly the limit" without decoding an hour."""
    raw = _run(
        ["-i", str(path), "-t", f"{max_seconds + 1 / sample_rate:.6f}", "-vn", "-ac", str(channels), "-ar", str(sample_rate),
         "-f", "f32le", "-"],
        # Without the name: its callers say "<name> is not readable audio" first.
        "not an audio format this app reads, or damaged",
    )
    samples = np.frombuffer(raw, dtype="<f4").copy()
    return samples if channels == 1 else samples.reshape(-1, channels)


def unreadable_audio(name: str, error: MediaError | OSError) -> str:
    """The message for an audio file that could not be read: "<name> is not readable audio (…)", said once; for a file
    that vanished or cannot be opened, "<name> could not be read (…)" without its path."""
    if isinstance(error, OSError):
        return f"{name} could not be read ({error.strerror or type(error).__name__})"
    text = str(error)
    return text if text.startswith(name) else f"{name} is not readable audio ({text})"


def audio_duration(path: Path) -> float | None:
    """The length in seconds an audio or video file's header states, read without decoding it (ffmpeg describes its
    input on stderr, "Duration: 01:00:00.00"); None where the header states none (a raw stream). MediaError when
    ffmpeg cannot open the file at all."""
    path = Path(path)
    # Without an output ffmpeg exits with an error, after describing the input on stderr.
    done = subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(path)], capture_output=True, timeout=FFMPEG_TIMEOUT_S)
    text = done.stderr.decode(errors="replace")
    if "Input #0" not in text or re.search(r"Stream #\S+: Audio:", text) is None:
        failure = f"{path.name} is not readable audio (not an audio format this app reads, or damaged)"
        _log_ffmpeg(failure, done)
        raise MediaError(failure)
    found = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", text)
    if found is None:
        return None
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


# Container → ffmpeg encoder arguments. 16-bit PCM in WAV and FLAC keeps every sample of a 16-bit input
# exactly; MP3 is lossy (for sharing, not for editing further).
AUDIO_FORMATS = {
    "wav": ["-c:a", "pcm_s16le"],
    "flac": ["-c:a", "flac", "-sample_fmt", "s16"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "320k"],
}


def encode_audio(samples: np.ndarray, sample_rate: int, comment: str, audio_format: str = "wav") -> bytes:
    """File bytes of float samples in [-1, 1] — shape (samples,) or (samples, channels) — in `audio_format`
    (a key of AUDIO_FORMATS), with `comment` in its metadata (INFO chunk, Vorbis comment or ID3)."""
    samples = np.asarray(samples, dtype="<f4")
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    pcm = samples.clip(-1.0, 1.0).tobytes()
    with tempfile.TemporaryDirectory() as folder:
        metadata = Path(folder) / "metadata.txt"
        metadata.write_text(";FFMETADATA1\ncomment=" + escape_ffmetadata(comment) + "\n", encoding="utf-8")
        target = Path(folder) / f"out.{audio_format}"
        _run(
            ["-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels), "-i", "-", "-i", str(metadata), "-map_metadata", "1",
             *AUDIO_FORMATS[audio_format], str(target)],
            f"ffmpeg could not encode the audio as {audio_format.upper()}", stdin=pcm,
        )
        return target.read_bytes()


def read_comment(path: Path) -> str | None:
    """The `comment` tag of an audio or video file, or None. (Matroska and WebM spell their tags in capitals.)"""
    text = _run(["-i", str(path), "-f", "ffmetadata", "-"], f"{Path(path).name} is not a readable audio or video file")
    tags = parse_ffmetadata(text.decode("utf-8", errors="replace"))
    return tags.get("comment", tags.get("COMMENT"))


def escape_ffmetadata(text: str) -> str:
    return "".join("\\" + char if char in "=;#\\\n" else char for char in text)


def parse_ffmetadata(text: str) -> dict[str, str]:
    """ffmpeg's metadata text: `key=value` lines where `=;#\\` and newlines are escaped with a backslash."""
    values: dict[str, str] = {}
    key, value, escaped, in_value = [], [], False, False
    for char in text.split("\n", 1)[1] if text.startswith(";FFMETADATA") else text:
        if escaped:
            (value if in_value else key).append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "=" and not in_value:
            in_value = True
        elif char == "\n":
            if in_value:
                values["".join(key)] = "".join(value)
            key, value, in_value = [], [], False
        else:
            (value if in_value else key).append(char)
    if in_value:
        values["".join(key)] = "".join(value)
    return values


# -- video ------------------------------------------------------------------------------------------

# Encoder settings per container. GIF goes through a palette made from the clip itself (ffmpeg's default 256-colour
# palette bands badly); H.264 and VP9 need even sides in 4:2:0, which every video family's size multiple gives.
VIDEO_ENCODERS = {
    ".mp4": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-preset", "medium", "-movflags", "+faststart"],
    ".webm": ["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p", "-crf", "30", "-b:v", "0", "-row-mt", "1"],
    ".gif": ["-filter_complex", "split[a][b];[a]palettegen=stats_mode=full[p];[b][p]paletteuse=dither=bayer"],
    ".webp": ["-c:v", "libwebp_anim", "-lossless", "0", "-quality", "90", "-pix_fmt", "yuv420p"],
}
# Containers that carry a loop count (0 = forever); ffmpeg writes it, and PIL reads it back.
LOOPING_SUFFIXES = (".gif", ".webp")


# The sound of another file carried into a new MP4 or WebM (`encode_video(audio_from=…)`); GIF and WebP have none.
AUDIO_IN_VIDEO = {".mp4": ["-c:a", "aac", "-b:a", "192k"], ".webm": ["-c:a", "libopus", "-b:a", "160k"]}


def encode_video(
    frames: np.ndarray, fps: float, suffix: str, comment: str, loop_count: int = 0, audio_from: Path | None = None,
) -> bytes:
    """The bytes of a video file of `frames` (n, height, width, 3 uint8) at `fps`, with `comment` (the
    parameters) embedded: the `comment` tag of MP4/WebM, a GIF comment extension, a WebP XMP chunk. `audio_from`: a
    file whose audio streams (if it has any) go into an MP4 or WebM as they are timed there."""
    count, height, width, _ = frames.shape
    raw = np.ascontiguousarray(frames, dtype=np.uint8).tobytes()
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / f"out{suffix}"
        metadata = Path(folder) / "metadata.txt"
        metadata.write_text(";FFMETADATA1\ncomment=" + escape_ffmetadata(comment) + "\n", encoding="utf-8")
        looping = ["-loop", str(loop_count)] if suffix in LOOPING_SUFFIXES else []
        sound = []
        if audio_from is not None and suffix in AUDIO_IN_VIDEO:
            # "?": a source without sound is no error. Without -shortest the file lasts as long as the longer stream.
            sound = ["-i", str(audio_from), "-map", "0:v", "-map", "2:a?", *AUDIO_IN_VIDEO[suffix]]
        _run(
            ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", f"{fps:g}", "-i", "-",
             "-i", str(metadata), *sound, "-map_metadata", "1", *VIDEO_ENCODERS[suffix], *looping, "-frames:v", str(count),
             str(target)],
            f"ffmpeg could not encode the video as {suffix.lstrip('.').upper()}", stdin=raw,
        )
        data = target.read_bytes()
    if suffix == ".gif":
        return _gif_with_comment(data, comment)
    if suffix == ".webp":
        return _webp_with_xmp(data, comment)
    return data


@dataclass(frozen=True)
class VideoFile:
    frames: np.ndarray  # (n, height, width, 3) uint8
    fps: float
    loop_count: int | None  # GIF and WebP only


def read_video(path: Path) -> VideoFile:
    """Every frame of a video file and its frame rate; GIF and animated WebP through PIL (ffmpeg's WebP decoder
    does not read animations), the rest through ffmpeg without dropping or repeating frames."""
    path = Path(path)
    if path.suffix.lower() in LOOPING_SUFFIXES:
        from PIL import Image

        durations, frames = [], []
        with Image.open(path) as image:
            for index in range(getattr(image, "n_frames", 1)):
                image.seek(index)
                image.load()  # WebP states a frame's duration only once the frame is decoded
                durations.append(image.info.get("duration", 0))
                frames.append(np.asarray(image.convert("RGB")))
            loop = image.info.get("loop")
        mean_ms = sum(durations) / len(durations)
        return VideoFile(np.stack(frames), 1000.0 / mean_ms if mean_ms else 0.0, loop)
    done = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(path), "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, timeout=FFMPEG_TIMEOUT_S,
    )
    stream = re.search(r"Video: .*?, (\d+)x(\d+)[ ,].*?, ([\d.]+) fps", done.stderr.decode(errors="replace"))
    if done.returncode != 0 or stream is None:
        _unreadable_video(path, done)
    width, height, fps = int(stream.group(1)), int(stream.group(2)), float(stream.group(3))
    frames = np.frombuffer(done.stdout, dtype=np.uint8).reshape(-1, height, width, 3)
    return VideoFile(frames, fps, None)


@dataclass(frozen=True)
class VideoProbe:
    """What a video file's header says: its frame size and rate."""

    width: int
    height: int
    fps: float


def probe_video(path: Path) -> VideoProbe:
    """The size and frame rate of the first video stream of any file ffmpeg reads (a still picture reads as a video
    of one frame at 25 fps); MediaError when it has none."""
    path = Path(path)
    # Without an output ffmpeg exits with an error, after describing the input on stderr.
    done = subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(path)], capture_output=True, timeout=FFMPEG_TIMEOUT_S)
    text = done.stderr.decode(errors="replace")
    stream = re.search(r"Video: [^\n]*?, (\d+)x(\d+)[ ,\n]", text)
    if stream is None:
        _unreadable_video(path, done)
    rate = re.search(r"Video: [^\n]*?([\d.]+) (?:fps|tbr)", text)
    return VideoProbe(int(stream.group(1)), int(stream.group(2)), float(rate.group(1)) if rate else 25.0)


def read_video_frames(path: Path, size: tuple[int, int], fps: float, max_frames: int) -> np.ndarray:
    """Frames (n, height, width, 3 uint8) of any video ffmpeg reads, sampled at `fps` from its start, scaled to cover
    `size` (width, height) and cropped to it in the middle, at most `max_frames`; MediaError when unreadable."""
    width, height = size
    scaled = f"fps={fps:g},scale={width}:{height}:force_original_aspect_ratio=increase,crop={width}:{height},setsar=1"
    done = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-vf", scaled, "-frames:v", str(max_frames),
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, timeout=FFMPEG_TIMEOUT_S,
    )
    if done.returncode != 0:
        _unreadable_video(Path(path), done)
    return np.frombuffer(done.stdout, dtype=np.uint8).reshape(-1, height, width, 3)


def _unreadable_video(path: Path, done: subprocess.CompletedProcess) -> NoReturn:
    failure = f"{path.name} is not a readable video (not a format ffmpeg decodes, or damaged)"
    _log_ffmpeg(failure, done)
    raise MediaError(failure)


def _gif_with_comment(data: bytes, comment: str) -> bytes:
    """A comment extension inserted after the GIF's screen descriptor and global palette, in 255-byte sub-blocks."""
    flags = data[10]
    palette_bytes = 3 * 2 ** ((flags & 0x07) + 1) if flags & 0x80 else 0
    start = 13 + palette_bytes
    text = comment.encode("utf-8")
    blocks = b"".join(bytes([len(text[i : i + 255])]) + text[i : i + 255] for i in range(0, len(text), 255))
    return data[:start] + b"\x21\xfe" + blocks + b"\x00" + data[start:]


_XMP_NAMESPACE = "https://github.com/atelier-studio/ns/1.0/"


def _webp_with_xmp(data: bytes, comment: str) -> bytes:
    """An XMP chunk holding `comment` appended to an extended (VP8X) WebP, its flag set and the RIFF size fixed."""
    from xml.sax.saxutils import quoteattr

    if data[12:16] != b"VP8X":
        raise MediaError("ffmpeg wrote a WebP without an extended header; cannot embed the parameters")
    packet = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description xmlns:atelier="{_XMP_NAMESPACE}" atelier:parameters={quoteattr(comment)}/>'
        "</rdf:RDF></x:xmpmeta>"
    ).encode("utf-8")
    chunk = b"XMP " + struct.pack("<I", len(packet)) + packet + (b"\x00" if len(packet) % 2 else b"")
    body = bytearray(data[8:]) + chunk
    body[12] |= 0x04  # VP8X flags byte: XMP present
    return b"RIFF" + struct.pack("<I", len(body)) + bytes(body)


def read_embedded_text(path: Path) -> str | None:
    """The parameters text a GIF (comment extension) or WebP (XMP chunk) made by `encode_video` carries, or None."""
    import xml.etree.ElementTree as ElementTree

    from PIL import Image

    with Image.open(path) as image:
        if path.suffix.lower() == ".gif":
            comment = image.info.get("comment")
            return comment.decode("utf-8", errors="replace") if comment else None
        xmp = image.info.get("xmp")
    if not xmp:
        return None
    for element in ElementTree.fromstring(xmp).iter():
        value = element.get(f"{{{_XMP_NAMESPACE}}}parameters")
        if value is not None:
            return value
    return None
