"""Media files given to or made by the app. Audio and video go through ffmpeg (the binary imageio-ffmpeg ships):
decode any audio to the sample rate a model wants, write WAV with the parameters in its `comment` tag, read that
tag back from any container. Images are checked from their header before anything decodes them.

libsndfile drops INFO comments longer than about 2 kB, too short for a long text's parameters, hence ffmpeg.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

FFMPEG_TIMEOUT_S = 600
# A picture's header states its size; refusing big ones before decoding stops decompression bombs.
MAX_IMAGE_PIXELS = 64 * 1024**2
_HASH_CHUNK_BYTES = 16 * 1024**2


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


class MediaError(ValueError):
    """A file ffmpeg cannot read or write; the message is ffmpeg's last words."""


def _run(arguments: list[str], stdin: bytes | None = None) -> bytes:
    done = subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", *arguments], input=stdin, capture_output=True, timeout=FFMPEG_TIMEOUT_S)
    if done.returncode != 0:
        raise MediaError(done.stderr.decode(errors="replace").strip()[-300:] or f"ffmpeg exited with {done.returncode}")
    return done.stdout


def image_size(path: Path) -> tuple[int, int]:
    """The (width, height) an image file states in its header, read without decoding the pixels; MediaError
    when it is not an image or is bigger than MAX_IMAGE_PIXELS."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, Image.DecompressionBombError) as error:
        raise MediaError(f"{path.name} is not a readable image: {error}") from None
    if width * height > MAX_IMAGE_PIXELS:
        raise MediaError(
            f"{path.name} is {width}×{height} pixels; images up to {MAX_IMAGE_PIXELS // 1024**2} megapixels are accepted."
        )
    return width, height


def file_digest(path: Path) -> str:
    """The first 16 hex digits of a file's SHA-256: enough to tell which input a result was made from."""
    return file_sha256(path)[:16]


def file_sha256(path: Path) -> str:
    """A file's SHA-256 in hex (what model sites list for a checkpoint), computed once per version of the file."""
    stat = Path(path).stat()
    return _sha256(Path(path).resolve(), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=256)
def _sha256(path: Path, size_bytes: int, mtime_ns: int) -> str:
    # Read in chunks: a checkpoint can be larger than the free RAM.
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def read_audio(path: Path, sample_rate: int, max_seconds: float) -> np.ndarray:
    """Mono float32 samples at `sample_rate`, decoded from any format ffmpeg knows; at most `max_seconds`
    plus one sample, so a caller can tell "too long" from "exactly the limit" without decoding an hour."""
    raw = _run(["-i", str(path), "-t", f"{max_seconds + 1 / sample_rate:.6f}", "-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"])
    return np.frombuffer(raw, dtype="<f4").copy()


def encode_wav(samples: np.ndarray, sample_rate: int, comment: str) -> bytes:
    """16-bit PCM WAV bytes of mono float samples in [-1, 1], with `comment` in its INFO chunk."""
    pcm = np.asarray(samples, dtype="<f4").clip(-1.0, 1.0).tobytes()
    with tempfile.TemporaryDirectory() as folder:
        metadata = Path(folder) / "metadata.txt"
        metadata.write_text(";FFMETADATA1\ncomment=" + escape_ffmetadata(comment) + "\n", encoding="utf-8")
        target = Path(folder) / "out.wav"
        _run(
            ["-f", "f32le", "-ar", str(sample_rate), "-ac", "1", "-i", "-", "-i", str(metadata), "-map_metadata", "1",
             "-c:a", "pcm_s16le", str(target)],
            stdin=pcm,
        )
        return target.read_bytes()


def read_comment(path: Path) -> str | None:
    """The `comment` tag of an audio or video file, or None."""
    return parse_ffmetadata(_run(["-i", str(path), "-f", "ffmetadata", "-"]).decode("utf-8", errors="replace")).get("comment")


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
