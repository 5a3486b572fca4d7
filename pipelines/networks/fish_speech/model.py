"""What the manager holds for a Fish Speech model: tokenizer, text-to-semantic transformer and codec,
loaded from one checkpoint folder in the official layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pipelines.networks.fish_speech.codec import CodecConfig, FishCodec, load_codec
from pipelines.networks.fish_speech.dual_ar import DualARTransformer, load_dual_ar
from pipelines.networks.fish_speech.tokenizer import FishTokenizer

# The official folder has no codec hyper-parameters (fish-speech keeps them in its code); a folder with
# another codec (our tiny demo) carries them in this file.
CODEC_CONFIG_FILE = "codec_config.json"
CODEC_WEIGHTS_FILE = "codec.pth"


@dataclass
class FishSpeech:
    tokenizer: FishTokenizer
    dual_ar: DualARTransformer
    codec: FishCodec
    device: torch.device
    dtype: torch.dtype

    @classmethod
    def from_folder(cls, folder: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> "FishSpeech":
        folder = Path(folder)
        config_path = folder / CODEC_CONFIG_FILE
        codec_config = CodecConfig.from_json(config_path) if config_path.is_file() else CodecConfig.official()
        return cls(
            tokenizer=FishTokenizer.from_folder(folder),
            dual_ar=load_dual_ar(folder, device=device, dtype=dtype),
            codec=load_codec(folder / CODEC_WEIGHTS_FILE, codec_config, device=device, dtype=dtype),
            device=torch.device(device),
            dtype=dtype,
        )

    def components(self) -> dict[str, torch.nn.Module]:
        return {"dual_ar": self.dual_ar, "codec": self.codec}

    @property
    def sample_rate(self) -> int:
        return self.codec.config.sample_rate

    @property
    def frames_per_second(self) -> float:
        return self.codec.config.sample_rate / self.codec.config.frame_length
