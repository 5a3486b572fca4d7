"""The memory engine: where each weight lives during a job, and moving it there without waste.

- `weights_file`: reads tensors from safetensors straight into their final place (no second full copy).
- `host_arena`: one host buffer, pinned once and reused across models, that holds the streamed weights.
- `block_streamer`: keeps some transformer blocks resident on the device and streams the others
  through a ring of device slots, copying block i+1 on a side stream while block i computes.
- `planner`: decides, per request and preset, how many blocks stay resident, and whether a job fits.
- `aligned_weights`: on the CPU, copies weights left misaligned by a mapped file into aligned memory, so a
  result does not depend on the file's byte layout (and equals the engine's).
- `encoder_storage`, `gguf_encoder`: text encoders read tensor by tensor, stored int8/fp8 while read, from safetensors
  or the community's GGUF encoder files; `mapped_weights`: the disk tier (weights as views on the mapped file);
  `encoder_streaming`: an encoder visiting the device whole or block by block; `encoder_plan`: their RAM/disk figures.
"""
