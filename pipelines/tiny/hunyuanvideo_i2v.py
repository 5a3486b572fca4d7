"""Tiny HunyuanVideo image to video, in the layout of `hunyuanvideo-community/HunyuanVideo-I2V`: a token-replace
HunyuanVideo transformer (16 latent channels, as the released I2V weights: the start picture's latents replace the
first latent frame), a Llava text encoder (a CLIP vision tower beside the Llama) with its tokenizer and image processor,
and HunyuanVideo's CLIP text encoder, VAE and scheduler (the T2V demo's).

The pipeline's own prompt template is kept (diffusers' `DEFAULT_PROMPT_TEMPLATE` for I2V), so the tiny model must meet
what it assumes of the real Llava-Llama-3: the picture's 576 tokens (a 24 × 24 patch grid at 336 px) at positions 5 to
580, one `<image>` token after `<|begin_of_text|><|start_header_id|>system<|end_header_id|>\\n\\n`, and the system text
short enough that the prompt follows it inside the 256 + 103 tokens read. The tokenizer here knows each word of the
template as one token (as Llama 3's does; its `ignore_merges` takes a known word whole) and spells anything else byte
by byte."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from diffusers import HunyuanVideoImageToVideoPipeline, HunyuanVideoTransformer3DModel
from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import DEFAULT_PROMPT_TEMPLATE
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, PreTrainedTokenizerFast,
)

from pipelines.tiny import framepack, hunyuanvideo

IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"
_SPECIAL_TOKENS = [*framepack.LLAMA_SPECIAL_TOKENS, IMAGE_TOKEN, PAD_TOKEN]
# Llava-Llama-3's vision tower: CLIP ViT-L/14 at 336 px, 24 × 24 patches.
_VISION_SIZE, _VISION_PATCH = 336, 14


def _template_words() -> list[str]:
    """The template's text between its special tokens, as the byte-level pre-tokenizer splits it."""
    splitter = pre_tokenizers.ByteLevel(add_prefix_space=False)
    pattern = "(" + "|".join(re.escape(token) for token in _SPECIAL_TOKENS) + "|\\{\\})"
    words = []
    for part in re.split(pattern, DEFAULT_PROMPT_TEMPLATE["template"]):
        if part and part not in _SPECIAL_TOKENS and part != "{}":
            words += [word for word, _ in splitter.pre_tokenize_str(part)]
    return words


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: index for index, token in enumerate(_SPECIAL_TOKENS)}
    for character in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[character] = len(vocab)
    for word in _template_words():
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], ignore_merges=True))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(_SPECIAL_TOKENS)
    bos = framepack.LLAMA_SPECIAL_TOKENS[0]
    tokenizer.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, vocab[bos])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, model_max_length=8192, bos_token=bos, eos_token="<|eot_id|>", pad_token=PAD_TOKEN,
    )


def tiny_llava(seed: int, tokenizer: PreTrainedTokenizerFast) -> LlavaForConditionalGeneration:
    torch.manual_seed(seed)
    pad_id, image_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN), tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=framepack.LLAMA_DIM, intermediate_size=32,
        # The pipeline reads the third hidden state from the end: embeddings and two layers.
        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=1024,
        bos_token_id=0, eos_token_id=1, pad_token_id=pad_id,
    )
    vision = CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=_VISION_SIZE,
        patch_size=_VISION_PATCH, projection_dim=16,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=image_id, pad_token_id=pad_id,
        vision_feature_layer=-2, vision_feature_select_strategy="default",
    )
    return LlavaForConditionalGeneration(config)


def tiny_transformer(seed: int) -> HunyuanVideoTransformer3DModel:
    """T2V's tiny transformer with the released I2V weights' conditioning: the picture replaces the first latent frame."""
    return hunyuanvideo.tiny_transformer(seed, image_condition_type="token_replace")


def build(folder: Path, seed: int) -> None:
    shared = framepack.hunyuanvideo_base_components(seed)
    tokenizer = tiny_tokenizer()
    processor = CLIPImageProcessor(
        size={"shortest_edge": _VISION_SIZE}, crop_size={"height": _VISION_SIZE, "width": _VISION_SIZE},
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    HunyuanVideoImageToVideoPipeline(
        transformer=tiny_transformer(seed + 1), text_encoder=tiny_llava(seed + 2, tokenizer), tokenizer=tokenizer,
        text_encoder_2=shared["text_encoder_2"], tokenizer_2=shared["tokenizer_2"], vae=shared["vae"],
        scheduler=shared["scheduler"], image_processor=processor,
    ).save_pretrained(folder)
