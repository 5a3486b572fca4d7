"""The codec against golden outputs of the official fish-speech implementation (tiny random-weight codec),
and the official checkpoint layout and file variants `load_codec` must accept."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from pipelines.networks.fish_speech.codec import (
    CodecConfig,
    FishCodec,
    convert_official_state_dict,
    load_codec,
    official_codec_state_dict,
)
from tests.pipelines.networks.fish_speech.conftest import assert_matches_reference

COMPUTED_BUFFERS = ("freqs_cis", "causal_mask")


@pytest.fixture(scope="module")
def config(fish_fixtures) -> CodecConfig:
    return CodecConfig.from_json(fish_fixtures / "codec" / "config.json")


@pytest.fixture(scope="module")
def codec(fish_fixtures, config) -> FishCodec:
    return load_codec(fish_fixtures / "codec" / "codec.safetensors", config)


@pytest.fixture(scope="module")
def reference_weights(fish_fixtures) -> dict[str, torch.Tensor]:
    return load_file(fish_fixtures / "codec" / "codec.safetensors")


def test_frame_sizes_follow_the_config(fish_fixtures, config):
    summary = json.loads((fish_fixtures / "summary.json").read_text())
    assert config.hop_length == summary["hop_length"]
    assert config.frame_length == summary["frame_length"]


def test_decode_reproduces_every_reference_stage(fish_fixtures, codec):
    reference = load_file(fish_fixtures / "codec_decode.safetensors")
    codes = reference["codes"].clone()
    quantizer = codec.quantizer

    dequantized = quantizer.dequantize(codes)
    assert_matches_reference(dequantized, reference["dequant_z_q"], "dequant_z_q")
    post = quantizer.post_module(dequantized)
    assert_matches_reference(post, reference["post_module_out"], "post_module_out")
    upsampled = quantizer.upsample(post)
    assert_matches_reference(upsampled, reference["quantizer_decode_out"], "quantizer_decode_out")
    assert_matches_reference(codec.decoder(upsampled), reference["waveform"], "decoder(quantizer_decode_out)")

    waveform, audio_lengths = codec.decode(codes, reference["feature_lengths"])
    assert_matches_reference(waveform, reference["waveform"], "waveform")
    assert_matches_reference(audio_lengths, reference["audio_lengths"], "audio_lengths")
    assert torch.equal(codes, reference["codes"]), "clamping out-of-range codes must not modify the caller's tensor"


def test_decode_of_language_model_codes_matches_reference(fish_fixtures, codec):
    reference = load_file(fish_fixtures / "codec_decode_generated.safetensors")
    codes = reference["codes"]
    waveform, audio_lengths = codec.decode(codes, torch.tensor([codes.shape[-1]]))
    assert_matches_reference(waveform, reference["waveform"], "waveform")
    assert_matches_reference(audio_lengths, reference["audio_lengths"], "audio_lengths")
    assert waveform.abs().max() <= 1.0


def test_out_of_range_codes_decode_as_the_last_codebook_entry(fish_fixtures, config, codec):
    codes = load_file(fish_fixtures / "codec_decode.safetensors")["codes"]
    out_of_range = codes.clone()
    out_of_range[:, 0, 0] = config.quantizer.semantic_codebook_size + 5
    out_of_range[:, -1, -1] = config.quantizer.codebook_size
    clamped = codes.clone()
    clamped[:, 0, 0] = config.quantizer.semantic_codebook_size - 1
    clamped[:, -1, -1] = config.quantizer.codebook_size - 1
    lengths = torch.tensor([codes.shape[-1]])
    assert torch.equal(codec.decode(out_of_range, lengths)[0], codec.decode(clamped, lengths)[0])


def test_encode_reproduces_encoder_output_transformer_output_and_exact_codes(fish_fixtures, config, codec):
    reference = load_file(fish_fixtures / "codec_encode.safetensors")
    audio = reference["audio"]
    padded = F.pad(audio, (0, -audio.shape[-1] % config.frame_length))

    encoded = codec.encoder(padded)
    assert_matches_reference(encoded, reference["encoder_out"], "encoder_out")
    pre = codec.quantizer.pre_module(codec.quantizer.downsample(encoded))
    assert_matches_reference(pre, reference["quantizer_pre_module_out"], "quantizer_pre_module_out")

    codes, code_lengths = codec.encode(audio, reference["audio_lengths"])
    assert codes.dtype == torch.long and codes.shape[1] == config.num_codebooks
    assert_matches_reference(codes, reference["codes"], "codes")
    assert_matches_reference(code_lengths, reference["code_lengths"], "code_lengths")


@pytest.fixture(scope="module")
def official_layout(fish_fixtures) -> dict:
    return json.loads((fish_fixtures / "codec_official_layout.json").read_text())


def test_official_config_is_the_one_the_official_layout_was_built_with(official_layout):
    official = CodecConfig.official()
    assert official == CodecConfig.from_dict(official_layout["config"])
    assert official.hop_length == official_layout["hop_length"]
    assert official.frame_length == official_layout["frame_length"]


def test_official_layout_fills_every_parameter_of_the_official_codec(fish_fixtures, official_layout):
    summary = json.loads((fish_fixtures / "summary.json").read_text())
    layout = official_layout["state_dict"]
    assert len(layout) == summary["official_codec_keys"]
    with torch.device("meta"):
        codec = FishCodec(CodecConfig.official())
        state_dict = {key: torch.empty(entry["shape"], dtype=getattr(torch, entry["dtype"])) for key, entry in layout.items()}

    converted = convert_official_state_dict(state_dict, codec, "codec_official_layout.json")
    parameters = dict(codec.named_parameters())
    assert converted.keys() == parameters.keys()
    assert all(converted[name].shape == parameter.shape for name, parameter in parameters.items())
    codec.load_state_dict(converted, strict=True, assign=True)

    # The official module counts weight norm's magnitude and direction separately; so does the layout we write.
    written = official_codec_state_dict(codec)
    stored = {key: tuple(entry["shape"]) for key, entry in layout.items() if not key.endswith(COMPUTED_BUFFERS)}
    assert {key: tuple(tensor.shape) for key, tensor in written.items()} == stored
    assert sum(tensor.numel() for tensor in written.values()) == summary["official_codec_parameters"]
    assert sum(math.prod(shape) for shape in stored.values()) == summary["official_codec_parameters"]


def _as_training_checkpoint(weights: dict) -> dict:
    """fish-speech training checkpoints: wrapped in `state_dict`, generator keys prefixed, other nets alongside."""
    generator = {f"generator.{key}": tensor for key, tensor in weights.items()}
    return {"state_dict": {**generator, "discriminator.conv.weight": torch.zeros(2, 2)}}


def _with_legacy_weight_norm(weights: dict) -> dict:
    """Every weight-normed conv stored as `weight_g` / `weight_v` instead of `parametrizations.weight.*`."""
    renamed = {}
    for key, tensor in weights.items():
        key = key.replace(".parametrizations.weight.original0", ".weight_g")
        renamed[key.replace(".parametrizations.weight.original1", ".weight_v")] = tensor
    return renamed


@pytest.mark.parametrize("variant", [_as_training_checkpoint, _with_legacy_weight_norm, dict])
def test_pth_checkpoint_variants_decode_identically(tmp_path, fish_fixtures, config, codec, reference_weights, variant):
    path = tmp_path / "codec.pth"
    torch.save(variant(reference_weights), path)
    codes = load_file(fish_fixtures / "codec_decode.safetensors")["codes"]
    lengths = torch.tensor([codes.shape[-1]])
    assert torch.equal(load_codec(path, config).decode(codes, lengths)[0], codec.decode(codes, lengths)[0])


def test_written_official_state_dict_loads_back_to_the_same_codec(tmp_path, fish_fixtures, config, codec):
    path = tmp_path / "codec.pth"
    torch.save(official_codec_state_dict(codec), path)
    codes = load_file(fish_fixtures / "codec_decode.safetensors")["codes"]
    lengths = torch.tensor([codes.shape[-1]])
    waveform = load_codec(path, config).decode(codes, lengths)[0]
    assert_matches_reference(waveform, codec.decode(codes, lengths)[0], "waveform after a save/load round trip")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file_raises_an_error_naming_it(tmp_path, config, reference_weights, suffix):
    complete = tmp_path / f"complete{suffix}"
    if suffix == ".pth":
        torch.save(reference_weights, complete)
    else:
        save_file(reference_weights, complete)
    truncated = tmp_path / f"truncated{suffix}"
    truncated.write_bytes(complete.read_bytes()[: complete.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"truncated\\{suffix}"):
        load_codec(truncated, config)


def test_missing_key_raises_an_error_naming_file_and_key(tmp_path, config, reference_weights):
    removed = next(key for key in reference_weights if key.startswith("decoder.") and key.endswith(".bias"))
    path = tmp_path / "incomplete.pth"
    torch.save({key: tensor for key, tensor in reference_weights.items() if key != removed}, path)
    with pytest.raises(ValueError, match="incomplete.pth") as error:
        load_codec(path, config)
    assert removed in str(error.value)


def test_half_of_a_weight_norm_pair_raises_an_error_naming_the_weight(tmp_path, config, reference_weights):
    removed = next(key for key in reference_weights if key.endswith(".weight_g"))
    path = tmp_path / "half.pth"
    torch.save({key: tensor for key, tensor in reference_weights.items() if key != removed}, path)
    with pytest.raises(ValueError, match="half.pth") as error:
        load_codec(path, config)
    assert removed.removesuffix("_g") in str(error.value)
