"""The lean block forward (memory/chunked_blocks.py): the same outputs as the blocks' own forward on tiny Wan, SkyReels V2,
VACE and HunyuanVideo transformers (SkyReels V2's whole model lean, its modulation per frame), the blocks given back
afterwards, and less memory held at a mid-size block and a mid-size SkyReels V2 model."""

import json
import subprocess
import sys

import pytest
import torch

from pipelines.memory.chunked_blocks import LeanSettings, PerFrame, has_lean_forward, has_lean_model_forward, lean_blocks, lean_capable
from pipelines.tiny import framepack, hunyuanvideo, skyreels_v2, wan

# float32 on the CPU: the chunked matmuls see other shapes than the whole ones, so the last bits may differ.
RTOL, ATOL = 1e-5, 1e-6
# 7 tokens a chunk: the 48 video tokens of the inputs below split into ragged chunks.
SETTINGS = LeanSettings(chunk_tokens=7)


def _wan_inputs(channels=wan.LATENT_CHANNELS, text_tokens=12):
    torch.manual_seed(0)
    return dict(hidden_states=torch.randn(1, channels, 3, 8, 8), timestep=torch.tensor([500]),
                encoder_hidden_states=torch.randn(1, text_tokens, wan.TEXT_DIM))


def _same_outputs(model, inputs, settings=SETTINGS):
    with torch.no_grad():
        normal = model(**inputs, return_dict=False)[0]
        with lean_blocks(model, settings) as count:
            lean = model(**inputs, return_dict=False)[0]
        again = model(**inputs, return_dict=False)[0]
    assert count == len([b for name, blocks in model.named_children() if isinstance(blocks, torch.nn.ModuleList) for b in blocks])
    assert torch.equal(normal, again), "the blocks' own forward is back, bit for bit"
    torch.testing.assert_close(lean, normal, rtol=RTOL, atol=ATOL)
    return normal, lean


def test_a_wan_t2v_transformer_gives_the_same_output_with_its_blocks_run_in_token_chunks():
    normal, lean = _same_outputs(wan.tiny_transformer(1, image_to_video=False), _wan_inputs())
    assert not torch.equal(normal, torch.zeros_like(normal))


def test_wan_i2v_blocks_chunk_the_image_cross_attention_too():
    inputs = _wan_inputs(wan.I2V_IN_CHANNELS, text_tokens=512)
    inputs["encoder_hidden_states_image"] = torch.randn(1, 5, wan.IMAGE_DIM)
    _same_outputs(wan.tiny_transformer(1, image_to_video=True), inputs)


def _skyreels_inputs(timesteps, frames=3):
    inputs = _wan_inputs()
    inputs.update(hidden_states=torch.randn(1, wan.LATENT_CHANNELS, frames, 8, 8), enable_diffusion_forcing=True,
                  timestep=torch.tensor([timesteps]))
    return inputs


def _blocks_temb(model, inputs, settings=SETTINGS):
    """What the first block gets as its modulation under the lean forward."""
    seen = []
    handle = model.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[2]))
    try:
        with torch.no_grad(), lean_blocks(model, settings):
            assert "forward" in vars(model), "SkyReels V2 runs its lean model forward"
            model(**inputs)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("timesteps", [[900, 600, 300], [700, 700, 700]], ids=["frames-differ", "frames-alike"])
def test_skyreels_v2_diffusion_forcing_keeps_its_modulation_per_frame_and_gives_the_same_output(timesteps):
    """Diffusion forcing's per-frame timesteps (the causal noise schedule: each frame noisier than the one before, or all
    alike): the lean model forward gives the same output, with 7-token chunks crossing frames (16 tokens a frame)."""
    model = skyreels_v2.tiny_transformer(1)
    inputs = _skyreels_inputs(timesteps)
    _same_outputs(model, inputs)
    assert "forward" not in vars(model), "the model's own forward is back"
    temb = _blocks_temb(model, inputs)
    width = model.config.num_attention_heads * model.config.attention_head_dim
    # (batch, frames, 6, width), not (batch, 6, tokens, width) as the model's own forward gives its blocks.
    assert isinstance(temb, PerFrame) and temb.values.shape == (1, 3, 6, width) and temb.tokens_per_frame == 16


def test_skyreels_v2_without_diffusion_forcing_and_with_one_chunk_gives_the_same_output():
    model = skyreels_v2.tiny_transformer(1)
    inputs = _wan_inputs()
    _same_outputs(model, inputs)
    _same_outputs(model, _skyreels_inputs([900, 600, 300]), LeanSettings(chunk_tokens=10_000))


def test_skyreels_v2_asynchronous_mode_makes_its_causal_mask_per_chunk_with_the_same_output():
    """Causal blocks of 2 latent frames (4 frames, 64 tokens): the model's own forward builds a 64 × 64 mask, the lean
    one each chunk's rows."""
    model = skyreels_v2.tiny_transformer(1)
    inputs = _skyreels_inputs([900, 800, 400, 300], frames=4)
    with torch.no_grad():
        full_attention = model(**inputs, return_dict=False)[0]
    model._set_ar_attention(2)
    normal, _ = _same_outputs(model, inputs)
    assert not torch.allclose(normal, full_attention), "the mask changes the output: the test sees it"


def test_a_skyreels_v2_block_without_its_lean_forward_keeps_the_models_own_forward():
    model = skyreels_v2.tiny_transformer(1)
    model.blocks[1].attn1.fuse_projections()
    assert not has_lean_model_forward(model)
    with lean_blocks(model, SETTINGS) as count:
        assert count == 1 and "forward" not in vars(model)


def test_vace_control_blocks_give_the_same_hints_and_output_in_chunks():
    inputs = _wan_inputs()
    inputs["control_hidden_states"] = torch.randn(1, wan.VACE_IN_CHANNELS, 3, 8, 8)
    _same_outputs(wan.tiny_vace_transformer(1), inputs)
    # On the CPU the hints stay where they are made: `hints_on_host` changes nothing there.
    _same_outputs(wan.tiny_vace_transformer(1), inputs, LeanSettings(chunk_tokens=7, hints_on_host=True))


def _hunyuan_inputs():
    torch.manual_seed(0)
    return dict(hidden_states=torch.randn(1, framepack.LATENT_CHANNELS, 3, 8, 8), timestep=torch.tensor([500]),
                encoder_hidden_states=torch.randn(1, 10, framepack.LLAMA_DIM),
                # Two padding tokens: the key mask hides them from every chunk of queries.
                encoder_attention_mask=torch.tensor([[1] * 8 + [0] * 2]), pooled_projections=torch.randn(1, framepack.CLIP_DIM),
                guidance=torch.tensor([6000.0]))


def test_hunyuanvideo_double_and_single_stream_blocks_give_the_same_output_in_chunks():
    model = hunyuanvideo.tiny_transformer(1)
    _same_outputs(model, _hunyuan_inputs())
    # One chunk bigger than all the tokens is the unchunked computation.
    _same_outputs(model, _hunyuan_inputs(), LeanSettings(chunk_tokens=10_000))


def test_framepack_reuses_hunyuanvideos_blocks_so_they_have_the_lean_forward():
    model = framepack.tiny_transformer(1)
    assert lean_capable(model)
    assert all(has_lean_forward(block) for block in [*model.transformer_blocks, *model.single_transformer_blocks])


def test_a_wrapped_attention_processor_keeps_the_blocks_own_forward():
    """A processor wrapper (Enhance-A-Video's) sees whole tensors: its block is left alone."""
    model = wan.tiny_transformer(1, image_to_video=False)

    class Wrapper:
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, *args, **kwargs):
            return self.inner(*args, **kwargs)

    model.blocks[0].attn1.processor = Wrapper(model.blocks[0].attn1.processor)
    assert not has_lean_forward(model.blocks[0]) and has_lean_forward(model.blocks[1])
    with lean_blocks(model, SETTINGS) as count:
        assert count == 1 and "forward" not in vars(model.blocks[0])


def test_models_without_a_lean_forward_are_not_lean_capable():
    from pipelines.tiny import flux

    assert not lean_capable(flux.tiny_transformer(1))
    assert lean_capable(wan.tiny_vace_transformer(1)) and lean_capable(hunyuanvideo.tiny_transformer(1))


# -- memory: one block at a mid-size config, normal vs lean, in a fresh process each (peak RSS, VmHWM) --------------

_PEAK_SCRIPT = r"""
import json, sys, torch
from diffusers.models.transformers.transformer_wan import WanTransformerBlock
from pipelines.memory.chunked_blocks import LeanSettings, wan_block_forward

torch.set_num_threads(1)
dim, ffn, heads, tokens = 512, 1536, 4, 12_000
torch.manual_seed(0)
block = WanTransformerBlock(dim, ffn, heads, cross_attn_norm=True).eval()
x = torch.randn(1, tokens, dim)
text = torch.randn(1, 16, dim)
temb = torch.randn(1, 6, dim)
rotary = (torch.ones(1, tokens, 1, dim // heads), torch.zeros(1, tokens, 1, dim // heads))

def hwm():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) * 1024

# The lean forward first, then the normal one: the peak only grows, and the normal forward reuses what the lean one freed.
result = {}
with torch.no_grad():
    before = hwm()
    lean = wan_block_forward(block, x, text, temb, rotary, settings=LeanSettings(chunk_tokens=1000))
    result["lean"] = hwm() - before
    del lean
    normal = block(x, text, temb, rotary)
    result["normal"] = hwm() - before
print(json.dumps(result))
"""


def test_a_lean_block_holds_far_less_memory_than_the_normal_forward():
    """One Wan block (512 wide, feed-forward 1,536, 12,000 tokens: a hidden-width tensor is 24.6 MB in float32) on the
    CPU, in a fresh process: peak RSS (VmHWM) grew 115 MB for the lean forward (its output, K, V and a chunk: about 4.7
    widths), 364 MB for the normal one (about 15 widths)."""
    done = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT], capture_output=True, text=True, check=True, timeout=300)
    grew = json.loads(done.stdout.strip().splitlines()[-1])
    assert grew["lean"] < 0.5 * grew["normal"], grew


_SKYREELS_PEAK_SCRIPT = r"""
import json, torch
from diffusers import SkyReelsV2Transformer3DModel
from pipelines.memory.chunked_blocks import LeanSettings, lean_blocks

torch.set_num_threads(1)
torch.manual_seed(0)
model = SkyReelsV2Transformer3DModel(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=128, in_channels=16,
                                     out_channels=16, text_dim=64, freq_dim=64, ffn_dim=1024, num_layers=1,
                                     cross_attn_norm=True, rope_max_seq_len=64).eval()
inputs = dict(hidden_states=torch.randn(1, 16, 8, 64, 64), timestep=torch.arange(8).mul(100).unsqueeze(0) + 100,
              encoder_hidden_states=torch.randn(1, 16, 64), enable_diffusion_forcing=True, return_dict=False)

def hwm():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) * 1024

result = {}
with torch.no_grad(), lean_blocks(model, LeanSettings(chunk_tokens=1024)):
    before = hwm()
    lean = model(**inputs)[0]
    result["lean_model"] = hwm() - before
    del lean
    # The same lean blocks under the model's own forward, which expands the modulation to every token.
    own = type(model).forward(model, **inputs)[0]
    result["own_model"] = hwm() - before
print(json.dumps(result))
"""


def test_skyreels_v2s_lean_model_forward_holds_far_less_than_its_own_forward_around_lean_blocks():
    """A one-block SkyReels V2 (512 wide, 8 latent frames of 1,024 tokens: a hidden-width tensor is 16.8 MB in float32)
    on the CPU in a fresh process, its block lean both times: peak RSS (VmHWM) grew 135 MB under the lean model forward
    (about 8 widths: the block's 4, the rotary tables in float64, a chunk), 282 MB under the model's own (about 17: its
    per-token modulation and time embedding, 7 widths, and the copy it makes of them)."""
    done = subprocess.run([sys.executable, "-c", _SKYREELS_PEAK_SCRIPT], capture_output=True, text=True, check=True, timeout=300)
    grew = json.loads(done.stdout.strip().splitlines()[-1])
    assert grew["lean_model"] < 0.6 * grew["own_model"], grew


def test_a_two_step_wan_generation_with_chunked_blocks_matches_the_normal_one():
    from diffusers import WanPipeline

    from pipelines.tiny import tokenizers

    pipe = WanPipeline(transformer=wan.tiny_transformer(1, image_to_video=False), vae=wan.tiny_vae(0),
                       text_encoder=wan.tiny_umt5(2), tokenizer=tokenizers.t5_tokenizer(model_max_length=512),
                       scheduler=wan.scheduler())

    def generate():
        return pipe("a red fox", num_inference_steps=2, height=32, width=32, num_frames=5, guidance_scale=5.0,
                    generator=torch.Generator().manual_seed(3), output_type="np").frames[0]

    normal = generate()
    with lean_blocks(pipe.transformer, LeanSettings(chunk_tokens=5)) as count:
        lean = generate()
    assert count == 2 and normal.shape == lean.shape == (5, 32, 32, 3)
    # Pixels in [0, 1] after two steps and the VAE: measured max |difference| 3.9e-5 (float32, CPU).
    assert abs(lean - normal).max() < 1e-4
