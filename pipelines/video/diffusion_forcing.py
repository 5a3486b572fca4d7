"""SkyReels V2 diffusion forcing: the chunks a video is made in and the rounds of transformer calls each takes.

Synchronous (`ar_step` 0): all latent frames of a chunk go through the steps together, one round per step.
Asynchronous (`ar_step` > 0): a chunk's latent frames are grouped into causal blocks of `causal_block_size`, each
attending only to itself and the blocks before it, and each block starts `ar_step` steps after the one before: earlier
blocks are cleaner by the time later ones are denoised (the model card reports better consistency and prompt
following), at the price of more rounds, about steps + (blocks − 1) · ar_step.

diffusers' `SkyReelsV2DiffusionForcingPipeline` lays this out itself; this module follows its arithmetic so a request can
be checked, and its cost stated, before anything loads. The pipeline needs every chunk to split into whole blocks (its
causal mask and its per-block schedule are built for `latent frames // block` blocks); it would silently cut the frames
a chunk continues from to whole blocks, so those must split too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipelines.errors import InvalidRequest

# The block size diffusers' docstring and the model card give with ar_step 5.
RECOMMENDED_CAUSAL_BLOCK = 5


@dataclass(frozen=True)
class Chunk:
    latent_frames: int
    # Latent frames taken over, already denoised, from the end of the chunk before.
    continued: int = 0


def chunks(total_latent_frames: int, chunk_latent_frames: int | None, shared_latent_frames: int) -> list[Chunk]:
    """The chunks the pipeline denoises one after the other: the whole video when it fits in one chunk (or no chunk
    length is given); else a first chunk, then chunks continuing from the last `shared` latent frames of the one before,
    the last one shorter when the video ends inside it."""
    if chunk_latent_frames is None or total_latent_frames <= chunk_latent_frames:
        return [Chunk(total_latent_frames)]
    new_per_chunk = chunk_latent_frames - shared_latent_frames
    count = 1 + -(-(total_latent_frames - chunk_latent_frames) // new_per_chunk)
    return [Chunk(chunk_latent_frames)] + [
        Chunk(min(total_latent_frames - index * new_per_chunk, chunk_latent_frames), shared_latent_frames)
        for index in range(1, count)
    ]


def block_sizes(layout: list[Chunk]) -> list[int]:
    """The causal block sizes that split every chunk, and every part continued from the chunk before, into whole blocks."""
    common = math.gcd(*(chunk.latent_frames for chunk in layout), *(chunk.continued for chunk in layout))
    return [size for size in range(1, common + 1) if common % size == 0]


def rounds(steps: int, chunk: Chunk, ar_step: int, block: int) -> int:
    """Transformer calls (per guidance pass) the pipeline makes for `chunk`: each round moves every started block one
    step on; a block starts `ar_step` steps after the one before, or right after it once that one is done."""
    blocks = chunk.latent_frames // block
    done = [steps] * (chunk.continued // block)
    levels = done + [0] * (blocks - len(done))
    count = 0
    while any(level < steps for level in levels):
        moved: list[int] = []
        for index, level in enumerate(levels):
            if index == 0 or levels[index - 1] >= steps:
                moved.append(min(level + 1, steps))
            else:
                moved.append(max(moved[index - 1] - ar_step, 0))
        levels = moved
        count += 1
    return count


def check_forcing(ar_step: int, block: int | None, steps: int, layout: list[Chunk]) -> tuple[int, int]:
    """(ar_step, causal_block_size) to call the pipeline with: (0, 1) synchronous; the block size, when not given,
    the largest that fits up to the recommended 5. InvalidRequest names the field otherwise."""
    if not 0 <= ar_step <= steps:
        raise InvalidRequest(
            "ar_step", f"{ar_step} is out of range; use 0 (synchronous) to {steps}, the steps (a lag of all the steps "
            "already makes each block wait for the one before to finish)"
        )
    if ar_step == 0:
        if block not in (None, 1):
            raise InvalidRequest("causal_block_size", f"{block} is for asynchronous mode; set ar_step above 0 or leave it empty")
        return 0, 1
    fitting = block_sizes(layout)
    if block is None:
        return ar_step, max(size for size in fitting if size <= RECOMMENDED_CAUSAL_BLOCK)
    if block not in fitting:
        parts = sorted({chunk.latent_frames for chunk in layout} | {chunk.continued for chunk in layout if chunk.continued})
        raise InvalidRequest(
            "causal_block_size", f"{block} does not split the chunks into whole blocks (latent frames per chunk and "
            f"continued: {', '.join(map(str, parts))}); use one of {', '.join(map(str, fitting))}"
        )
    return ar_step, block
