"""Fish Speech / OpenAudio S1-mini, implemented in plain torch: the tiktoken tokenizer, the dual
autoregressive text-to-semantic model, and the modded DAC codec. Loads the official checkpoint folder
(`config.json`, `model.pth`, `tokenizer.tiktoken`, `special_tokens.json`, `codec.pth`) as published."""
