"""A text encoder visiting the GPU from where its weights wait: whole, or block by block.

An encoder runs once per job, so its copies need not overlap compute as the denoiser's do (`block_streamer.py`): the
weights wait on the host — in RAM, stored as the plan chose (`encoder_storage.py`), or as views on their memory-mapped
file (`mapped_weights.py`) — and each block is copied to the device just before it runs, and dropped after. Its host
tensors are never replaced: going back costs nothing and allocates nothing (accelerate's offload hook moves a module
back with `.to("cpu")`, which for a mapped encoder would fill RAM with a copy of the file).

- streamed (`whole=False`): the trunk (embeddings, final norm) comes at the encoder's forward, each block at its own;
  the device holds the trunk and one block (UMT5-XXL in bf16: 2.1 GB of trunk, its 256k-token embedding; 0.39 GB a
  block).
- whole (`whole=True`): everything comes at the forward and leaves when the next component starts.

`offload()` gives the device memory back, so the encoder sits in the chain of visiting components like accelerate's
hooks. On the CPU the same code runs, copying into fresh CPU memory, which is how tests check that a streamed encoder
computes exactly what a resident one does.
"""

from __future__ import annotations


import torch

from pipelines.memory.block_streamer import HeldTensor, find_blocks


def _tensors(module: torch.nn.Module, skip: set[int] = frozenset()) -> list[HeldTensor]:
    found, seen = [], set(skip)
    for owner in module.modules():
        for name, parameter in owner._parameters.items():
            if parameter is not None and id(parameter) not in seen:
                seen.add(id(parameter))
                found.append(HeldTensor(owner, name, True, parameter.data))
        for name, buffer in owner._buffers.items():
            if buffer is not None and id(buffer) not in seen:
                seen.add(id(buffer))
                found.append(HeldTensor(owner, name, False, buffer))
    return found


class EncoderStreamer:
    """Installed on one encoder whose weights wait on the host; `whole` chooses whole visits or block by block."""

    def __init__(self, model: torch.nn.Module, device: torch.device, whole: bool = False):
        self.model = model
        self.device = torch.device(device)
        self.whole = whole
        blocks = [module for _, module in find_blocks(model)]
        self.blocks = [_tensors(block) for block in blocks]
        in_blocks = {id(tensor) for block in blocks for tensor in [*block.parameters(), *block.buffers()]}
        self.trunk = _tensors(model, in_blocks)
        self._on_device: dict[int, HeldTensor] = {}
        # What a user sees through tests and logs: bytes copied to the device since the encoder was placed.
        self.copied_bytes = 0
        arriving = self.trunk + ([tensor for block in self.blocks for tensor in block] if whole else [])
        self._hooks = [model.register_forward_pre_hook(lambda module, args: self._visit(arriving))]
        if not whole:
            for block, tensors in zip(blocks, self.blocks):
                self._hooks += [
                    block.register_forward_pre_hook(lambda module, args, tensors=tensors: self._visit(tensors)),
                    block.register_forward_hook(lambda module, args, output, tensors=tensors: self._leave(tensors)),
                ]

    @property
    def host_bytes(self) -> int:
        return sum(tensor.host.nbytes for tensors in [self.trunk, *self.blocks] for tensor in tensors)

    @torch.inference_mode(False)  # the device copies are bound as parameters, used outside any inference block too
    def _visit(self, tensors: list[HeldTensor]) -> None:
        for tensor in tensors:
            if id(tensor) in self._on_device:
                continue
            # A real copy on the CPU too: the same bindings run there, which tests check.
            tensor.bind(tensor.host.to(self.device, non_blocking=True, copy=True))
            self.copied_bytes += tensor.host.nbytes
            self._on_device[id(tensor)] = tensor

    def _leave(self, tensors: list[HeldTensor]) -> None:
        for tensor in tensors:
            tensor.bind(tensor.host)
            self._on_device.pop(id(tensor), None)

    def offload(self) -> None:
        """Back to the host tensors; the device copies are freed. Called when the next component starts."""
        self._leave(list(self._on_device.values()))

    def remove(self) -> None:
        self.offload()
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
