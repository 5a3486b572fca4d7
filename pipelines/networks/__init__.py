"""Networks diffusers does not have, in plain torch and our own code: Fish Speech / OpenAudio S1-mini and RIFE. Runners and loaders build on them."""
