"""The audio models: OpenAudio S1-mini (Fish Speech, text to speech) and ACE-Step 1.5 (text to music), and the tiny
demo twin of each.

ACE-Step's entries state what they have beyond their family's defaults (see `families.entry`). Fish Speech runs
our own port rather than a diffusers pipeline and has no family rules, so its entries state everything.
"""

from __future__ import annotations

from pipelines.catalog.families import DEMO_LICENCE, entry
from pipelines.catalog.schema import Family, ModelSpec, MusicDefaults, SpeechDefaults, Task, frozen

# ACE-Step 1.5 XL: a 4.7B DiT (9.5 GB in bf16 with its condition encoder), the Qwen3-Embedding-0.6B text encoder
# and the 48 kHz Oobleck VAE, as the published files weigh.
_ACE_STEP_XL_BYTES = {"transformer": 9_516_000_000, "text_encoder": 1_190_000_000, "vae": 337_000_000}

AUDIO = (
    ModelSpec(
        id="openaudio-s1-mini",
        name="OpenAudio S1-mini (Fish Speech)",
        family=Family.FISH_SPEECH,
        task=Task.TEXT_TO_SPEECH,
        pipeline_class="FishSpeech",
        repo="fishaudio/openaudio-s1-mini",
        defaults=SpeechDefaults(),
        component_bytes=frozen({"dual_ar": 1_740_000_000, "codec": 1_870_000_000}),
        licence="CC-BY-NC-SA-4.0 (non-commercial use only); gated on the Hub (accept the terms first).",
        allow_patterns=("*.json", "*.pth", "*.tiktoken"),
        folder_marker="codec.pth",
    ),
    entry(
        Family.ACE_STEP, Task.TEXT_TO_MUSIC,
        id="ace-step-15-xl-turbo",
        name="ACE-Step 1.5 XL Turbo",
        repo="ACE-Step/acestep-v15-xl-turbo-diffusers",
        # Guidance is distilled into the weights: the pipeline ignores guidance for turbo checkpoints.
        defaults=MusicDefaults(steps=8, guidance=1.0),
        component_bytes=_ACE_STEP_XL_BYTES,
    ),
    entry(
        Family.ACE_STEP, Task.TEXT_TO_MUSIC,
        id="ace-step-15-xl-base",
        name="ACE-Step 1.5 XL Base",
        repo="ACE-Step/acestep-v15-xl-base-diffusers",
        # Not distilled: guidance on, and more steps than turbo's 8.
        defaults=MusicDefaults(steps=32, guidance=7.0),
        component_bytes=_ACE_STEP_XL_BYTES,
    ),
)

AUDIO_DEMOS = (
    ModelSpec(
        id="demo-fish-speech",
        name="Fish Speech (tiny)",
        family=Family.FISH_SPEECH,
        task=Task.TEXT_TO_SPEECH,
        pipeline_class="FishSpeech",
        demo=True,
        defaults=SpeechDefaults(max_new_tokens=64, chunk_length=60),
        component_bytes=frozen({"dual_ar": 3_000_000, "codec": 1_000_000}),
        licence=DEMO_LICENCE,
        folder_marker="codec.pth",
    ),
    entry(
        Family.ACE_STEP, Task.TEXT_TO_MUSIC,
        id="demo-ace-step",
        name="ACE-Step 1.5 Turbo (tiny)",
        demo=True,
        defaults=MusicDefaults(steps=2, guidance=1.0, duration=4.0),
        component_bytes={"transformer": 300_000, "text_encoder": 500_000, "vae": 200_000},
    ),
)
