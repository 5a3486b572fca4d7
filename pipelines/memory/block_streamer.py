"""Partial residency plus overlapped streaming for a transformer's repeated blocks.

Every block's weights live once on the host, packed in the `HostArena`. Resident blocks also have a copy
on the device for the whole job. Streamed blocks are copied, in the order the forward runs them, into a
ring of device slots: while block i computes on the default stream, the copy of the next streamed block
runs on a side stream; a block waits only for its own copy, and a slot is refilled only after the block
that used it has finished. The order repeats every forward, so the tail of one step prefetches the head
of the next. A block run out of order (a Stop mid-step) resynchronises the ring.

Three things keep the ring from copying in vain:
- Nothing reaches the device before the denoiser's first forward of a job (`place` only decides): the text encoders
  run first with the whole card to themselves; `offload` after the job gives it all back.
- The order is the one the forward runs, recorded on the first forward: Wan VACE runs its `vace_blocks` before the
  `blocks` it defines first, and prefetching in definition order cost two syncs and a re-prime every forward.
- A block a step cache skips (TeaCache, FirstBlockCache) is not waited for and nothing after it is prefetched in that
  forward: each block's forward marks that it computed, so the streamer sees a skip when a block's call ends without
  its forward having run. The copies already in flight stay in their slots for the next forward.

On the CPU the same code runs without streams, which is how tests check that streaming changes nothing.
"""

from __future__ import annotations

import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import torch

from pipelines.memory.host_arena import HostArena, align
from pipelines.memory.stored_weights import (
    SCALE_DTYPE, STORAGE_DTYPES, StoredAs, StoredTensor, dequantize_into, quantizable, stored_nbytes,
)

log = logging.getLogger(__name__)

# fill(name, destination): write the tensor called `name` (its full name in the model) into `destination`: a tensor of
# its compute dtype, or, for a weight stored quantized, a `StoredTensor` (data and per-row scale) to quantize into.
Fill = Callable[[str, "torch.Tensor | StoredTensor"], None]


@dataclass
class _Tensor:
    name: str
    local_name: str
    parameter: torch.nn.Parameter
    offset: int
    nbytes: int
    dtype: torch.dtype  # the compute dtype the block runs it in
    shape: torch.Size
    # Quantized storage (int8 / fp8): the data at `offset`, one float32 scale a row at `scale_offset`, and where the
    # weight is expanded to `dtype` in the scratch buffer before its block runs. None: kept in `dtype` as it is.
    stored_dtype: torch.dtype | None = None
    scale_offset: int = 0
    scratch_offset: int = 0

    def view(self, buffer: torch.Tensor) -> torch.Tensor:
        return buffer[self.offset : self.offset + self.nbytes].view(self.stored_dtype or self.dtype).view(self.shape)

    def destination(self, buffer: torch.Tensor) -> torch.Tensor | StoredTensor:
        """Where a fill writes this tensor: a plain view, or the stored data and its scale."""
        if self.stored_dtype is None:
            return self.view(buffer)
        rows = self.shape[0]
        return StoredTensor(self.view(buffer), buffer[self.scale_offset : self.scale_offset + rows * SCALE_DTYPE.itemsize].view(SCALE_DTYPE))

    def placeholder(self, device: torch.device) -> torch.Tensor:
        """What a quantized weight's parameter holds while its block is not running: its dtype and shape, no memory."""
        return torch.empty((), dtype=self.dtype, device=device).expand(self.shape)


@dataclass
class _Block:
    index: int
    module: torch.nn.Module
    tensors: list[_Tensor]
    nbytes: int
    scratch_nbytes: int = 0  # the quantized weights expanded to the compute dtype
    host: torch.Tensor | None = None
    device_copy: torch.Tensor | None = None
    bound: torch.Tensor | None = None  # the buffer the block's parameters point into now
    hooks: list = field(default_factory=list)

    @property
    def quantized(self) -> bool:
        return self.scratch_nbytes > 0

    def bind(self, buffer: torch.Tensor) -> None:
        self.bound = buffer
        for tensor in self.tensors:
            tensor.parameter.data = tensor.view(buffer) if tensor.stored_dtype is None else tensor.placeholder(buffer.device)

    def expand(self, scratch: torch.Tensor) -> None:
        """Turn the quantized weights of the bound buffer into the compute dtype in `scratch`, and bind them there."""
        for tensor in self.tensors:
            if tensor.stored_dtype is not None:
                stored = tensor.destination(self.bound)
                nbytes = tensor.shape.numel() * tensor.dtype.itemsize
                target = scratch[tensor.scratch_offset : tensor.scratch_offset + nbytes].view(tensor.dtype).view(tensor.shape)
                tensor.parameter.data = dequantize_into(stored.data, stored.scale, target)


@dataclass
class _Slot:
    buffer: torch.Tensor | None  # None while the streamer is offloaded
    block: int | None = None
    ready: torch.cuda.Event | None = None
    free: torch.cuda.Event | None = None


@dataclass(eq=False)  # compared by identity
class HeldTensor:
    """A parameter or buffer whose host copy is kept while a device copy is bound in its place for a job (the trunk
    outside the block lists here; an encoder's tensors in `encoder_streaming.py`)."""

    owner: torch.nn.Module
    name: str
    is_parameter: bool
    host: torch.Tensor

    def bind(self, value: torch.Tensor) -> None:
        if self.is_parameter:
            self.owner._parameters[self.name].data = value
        else:
            self.owner._buffers[self.name] = value


DtypeFor = Callable[[str], torch.dtype]
# stored_for(name): how the block weight called `name` is kept (only Linear layers' 2-D weights are asked).
StoredFor = Callable[[str], StoredAs]


def _linear_weights(module: torch.nn.Module) -> set[str]:
    return {f"{name}.weight".lstrip(".") for name, child in module.named_modules() if isinstance(child, torch.nn.Linear)}


def _layout(index: int, prefix: str, module: torch.nn.Module, dtype_for: DtypeFor, stored_for: StoredFor | None) -> _Block:
    tensors, offset, scratch = [], 0, 0
    linear = _linear_weights(module) if stored_for is not None else set()
    for name, parameter in module.named_parameters(recurse=True):
        target = dtype_for(f"{prefix}{name}") if parameter.is_floating_point() else parameter.dtype
        # Only floating weights are quantized here: GGUF's packed bytes (uint8) stream as they are.
        stored = StoredAs.SHIPPED
        if name in linear and parameter.is_floating_point() and quantizable(parameter.shape):
            stored = stored_for(f"{prefix}{name}")
        if stored is StoredAs.SHIPPED:
            nbytes = parameter.numel() * torch.empty((), dtype=target).element_size()
            tensors.append(_Tensor(f"{prefix}{name}", name, parameter, offset, nbytes, target, parameter.shape))
            offset += align(nbytes)
            continue
        data_bytes, scale_bytes = stored_nbytes(tuple(parameter.shape), stored)
        tensors.append(_Tensor(
            f"{prefix}{name}", name, parameter, offset, data_bytes, target, parameter.shape,
            stored_dtype=STORAGE_DTYPES[stored], scale_offset=offset + align(data_bytes), scratch_offset=scratch,
        ))
        offset += align(data_bytes) + align(scale_bytes)
        scratch += align(parameter.numel() * target.itemsize)
    return _Block(index, module, tensors, offset, scratch)


def find_blocks(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The repeated blocks in execution order: every direct ModuleList child, in definition order
    (diffusers' transformers run their block lists in the order they define them). A model with none holds its
    blocks deeper, as transformers' encoders do (T5's `encoder.block`, Llama's `model.layers`, CLIP's
    `text_model.encoder.layers`): then the children are searched the same way, in definition order."""
    blocks = []
    for list_name, child in model.named_children():
        if isinstance(child, torch.nn.ModuleList):
            blocks += [(f"{list_name}.{i}.", block) for i, block in enumerate(child)]
    if blocks:
        return blocks
    for child_name, child in model.named_children():
        blocks += [(f"{child_name}.{prefix}", block) for prefix, block in find_blocks(child)]
    return blocks


class BlockStreamer:
    """Installed on one model; `resident` says which block indices stay on the device."""

    def __init__(
        self, model: torch.nn.Module, arena: HostArena, device: torch.device, dtype_for: DtypeFor, ring_slots: int = 2,
        stored_for: StoredFor | None = None,
    ):
        if ring_slots < 1:
            raise ValueError("ring_slots must be at least 1")
        self.model = model
        self.arena = arena
        self.device = torch.device(device)
        self.ring_slots = ring_slots
        self.blocks = [_layout(i, prefix, module, dtype_for, stored_for) for i, (prefix, module) in enumerate(find_blocks(model))]
        # One buffer the quantized weights of the running block are expanded into (the largest block's), reused.
        self._scratch: torch.Tensor | None = None
        self.resident: set[int] = set()
        self._order: list[int] = []
        self._slots: list[_Slot] = []
        self._consumed = 0  # blocks consumed since the ring was last synchronised
        self._issued = 0
        self._shift = 0
        self._cuda = self.device.type == "cuda"
        self._on_device = False
        self._copy_stream = torch.cuda.Stream(self.device) if self._cuda else None
        self._model_hooks: list = []
        self._held: list[HeldTensor] = []
        # The streamed blocks' execution order as recorded on a complete forward (block index -> position).
        self._rank: dict[int, int] = {}
        self._order_known = False
        self._recording: list[int] | None = None
        self._ran = False  # set by a block's forward: the block computed (a step cache may skip it)
        self._skipping = False  # a block of this forward was skipped: the rest of it is too
        # Counters a user sees through tests and logs: bytes copied to the ring, and how often the ring restarted.
        self.streamed_copy_bytes = 0
        self.resyncs = 0
        for block in self.blocks:
            _mark_compute(block.module, self._computing, block.index)

    # -- sizes ------------------------------------------------------------------------------------

    @property
    def block_bytes(self) -> list[int]:
        return [block.nbytes for block in self.blocks]

    @property
    def scratch_bytes(self) -> int:
        """Device memory the quantized weights of one block take expanded to the compute dtype (0 as shipped): one
        buffer of this size sits on the device during a job, beside the resident blocks and the ring."""
        return max((block.scratch_nbytes for block in self.blocks), default=0)

    @property
    def trunk_bytes(self) -> int:
        """The bytes of everything outside the block lists (known once `hold_outside_blocks` ran). The parameters of
        quantized weights report their compute dtype's size: count the trunk from here, not from the parameters."""
        return sum(held.host.numel() * held.host.element_size() for held in self._held)

    @property
    def on_device(self) -> bool:
        """Whether the trunk, the resident blocks and the ring are on the device now (only during a forward's job)."""
        return self._on_device

    # -- set-up -----------------------------------------------------------------------------------

    def fill_host(self, fill: Fill, threads: int = 8) -> None:
        """Lay every block out in the arena and fill it (reads in parallel: page cache to arena is
        memory-bound, one thread leaves most of the bandwidth unused); parameters then point at their host copy."""
        self.arena.start_model([block.nbytes for block in self.blocks])
        work = []
        for block in self.blocks:
            block.host = self.arena.take(block.nbytes)
            for tensor in block.tensors:
                work.append((tensor.name, tensor.destination(block.host)))
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for _ in pool.map(lambda item: fill(*item), work):
                pass
        for block in self.blocks:
            for tensor in block.tensors:
                # A fresh Parameter: the old one may live on the meta device, whose data cannot be swapped.
                host = tensor.view(block.host) if tensor.stored_dtype is None else tensor.placeholder(block.host.device)
                tensor.parameter = fresh_parameter(tensor.parameter, host)
                replace_parameter(block.module, tensor.local_name, tensor.parameter)
            block.bound = block.host

    @torch.inference_mode(False)  # device buffers are refilled by hooks that may run outside inference mode
    def place(self, resident: set[int], ring_slots: int | None = None) -> None:
        """(Re)decide which blocks are resident; cheap to call again, the host copies stay where they are. Nothing
        moves to the device here: the denoiser's next forward brings what it needs (`_before_forward`)."""
        self._uninstall_hooks()
        self.offload()
        if ring_slots is not None:
            self.ring_slots = ring_slots
        self.resident = set(resident)
        streamed = [block.index for block in self.blocks if block.index not in self.resident]
        if all(index in self._rank for index in streamed):
            streamed.sort(key=self._rank.__getitem__)
        self._order = streamed
        self._order_known = all(index in self._rank for index in streamed)
        self._recording = None
        self._slots = [_Slot(None) for _ in range(self.ring_slots)] if self._order else []
        for index in self._order:
            block = self.blocks[index]
            block.hooks = [
                block.module.register_forward_pre_hook(lambda module, args, index=index: self._before_block(index)),
                block.module.register_forward_hook(lambda module, args, output, index=index: self._after_block(index)),
            ]
        self._model_hooks = [
            self.model.register_forward_pre_hook(lambda module, args: self._before_forward()),
            self.model.register_forward_hook(lambda module, args, output: self._after_forward()),
        ]
        self._consumed = 0

    def hold_outside_blocks(self) -> None:
        """Keep every tensor outside the block lists (the trunk, and every buffer) on the host between jobs; the
        first forward of a job moves them to the device and `offload` binds the host copies again."""
        in_blocks = {id(tensor.parameter) for block in self.blocks for tensor in block.tensors}
        self._held = []
        for name, parameter in self.model.named_parameters():
            if id(parameter) not in in_blocks:
                owner, local = _owner(self.model, name)
                self._held.append(HeldTensor(owner, local, True, parameter.data))
        for name, buffer in self.model.named_buffers():
            owner, local = _owner(self.model, name)
            self._held.append(HeldTensor(owner, local, False, buffer))

    def offload(self) -> None:
        """Give the device memory back (resident copies and ring) while other components run; the next
        forward brings it back. Shaped like accelerate's offload hook, so it can sit in their chain."""
        if self._on_device:
            self._synchronise()
            for block in self.blocks:
                block.device_copy = None
                block.bind(block.host)
            for slot in self._slots:
                slot.buffer = None
            self._scratch = None
            for held in self._held:
                held.bind(held.host)
            self._on_device = False

    @torch.inference_mode(False)
    def _onload(self) -> None:
        """Trunk and resident blocks onto the device, ring slots allocated, ring started."""
        for held in self._held:
            held.bind(held.host.to(self.device, non_blocking=True))
        for index in self.resident:
            block = self.blocks[index]
            if block.device_copy is None:
                block.device_copy = torch.empty(block.nbytes, dtype=torch.uint8, device=self.device)
                block.device_copy.copy_(block.host, non_blocking=True)
            block.bind(block.device_copy)
        largest = max((self.blocks[i].nbytes for i in self._order), default=0)
        for slot in self._slots:
            slot.buffer = torch.empty(largest, dtype=torch.uint8, device=self.device)
        self._on_device = True
        if self._order:
            self._resync(0)

    # -- the ring ---------------------------------------------------------------------------------

    def _order_index(self, k: int) -> int:
        return self._order[(k + self._shift) % len(self._order)]

    def _refill(self) -> None:
        while self._order and self._issued < self._consumed + len(self._slots):
            self._issue(self._issued % len(self._slots), self._order_index(self._issued))
            self._issued += 1

    def _issue(self, slot_index: int, block_index: int) -> None:
        slot, block = self._slots[slot_index], self.blocks[block_index]
        target = slot.buffer[: block.nbytes]
        if self._cuda:
            with torch.cuda.stream(self._copy_stream):
                if slot.free is not None:
                    self._copy_stream.wait_event(slot.free)
                target.copy_(block.host, non_blocking=True)
                slot.ready = torch.cuda.Event()
                slot.ready.record(self._copy_stream)
        else:
            target.copy_(block.host)
        slot.block = block_index
        self.streamed_copy_bytes += block.nbytes

    def _resync(self, position: int) -> None:
        """Start the ring again so that streamed position `position` is the next one consumed."""
        self.resyncs += 1
        self._synchronise()
        for index in self._order:
            self.blocks[index].bind(self.blocks[index].host)
        self._shift = (position - self._consumed) % len(self._order)
        self._issued = self._consumed
        for slot in self._slots:
            slot.block, slot.ready, slot.free = None, None, None
        self._refill()

    def _before_forward(self) -> None:
        self._skipping = False
        if self._order and not self._order_known:
            self._recording = []
        if not self._on_device:
            self._onload()
        elif self._order and self._order_index(self._consumed) != self._order[0]:
            self._resync(0)

    def _after_forward(self) -> None:
        """After a complete forward (every streamed block computed once), its order becomes the prefetch order."""
        recorded, self._recording = self._recording, None
        if recorded is None or sorted(recorded) != sorted(self._order):
            return
        self._rank = {index: position for position, index in enumerate(recorded)}
        self._order_known = True
        if recorded != self._order:
            log.info("streamed blocks run in another order than defined; prefetching in the order they run")
            self._order = recorded
            self._resync(0)

    def _before_block(self, index: int) -> None:
        self._ran = False
        if self._skipping:
            return  # a step cache skips the rest of this forward: nothing to wait for, nothing more to copy
        slot = self._slots[self._consumed % len(self._slots)]
        if slot.block != index:
            self._resync(self._order.index(index))
            slot = self._slots[self._consumed % len(self._slots)]
        if self._cuda:
            torch.cuda.current_stream(self.device).wait_event(slot.ready)
        self.blocks[index].bind(slot.buffer)

    def _computing(self, index: int) -> None:
        """A block's forward starts: it computes. One of a forward already seen as skipped gets its weights now; quantized
        weights are expanded to the compute dtype now, where the block's bytes are (a step cache's skip expands none)."""
        if self._skipping and self._on_device and index not in self.resident and self._order:
            self._skipping = False
            self._before_block(index)
        self._ran = True
        block = self.blocks[index]
        if block.quantized:
            block.expand(self._scratch_on(block.bound.device))

    @torch.inference_mode(False)
    def _scratch_on(self, device: torch.device) -> torch.Tensor:
        if self._scratch is None or self._scratch.device != device:
            self._scratch = torch.empty(self.scratch_bytes, dtype=torch.uint8, device=device)
        return self._scratch

    def _after_block(self, index: int) -> None:
        if self._skipping:
            return
        slot = self._slots[self._consumed % len(self._slots)]
        self.blocks[index].bind(self.blocks[index].host)
        if not self._ran:
            # Skipped by a step cache: so are the blocks after it in this forward. The slot keeps its copy (TeaCache
            # skips from the first block, whose copy the next forward then uses as it is).
            self._skipping = True
            self._recording = None
            return
        if self._cuda:
            slot.free = torch.cuda.Event()
            slot.free.record(torch.cuda.current_stream(self.device))
        if self._recording is not None:
            self._recording.append(index)
        self._consumed += 1
        self._refill()

    def _synchronise(self) -> None:
        if self._cuda:
            torch.cuda.synchronize(self.device)

    def _uninstall_hooks(self) -> None:
        for block in self.blocks:
            for hook in block.hooks:
                hook.remove()
            block.hooks = []
        for hook in self._model_hooks:
            hook.remove()
        self._model_hooks = []


def _mark_compute(module: torch.nn.Module, computing: Callable[[int], None], index: int) -> None:
    """Wrap a block's forward so that the streamer hears when the block really computes. Set on the instance before
    any step cache or compiled forward wraps it, so those call it only when the block runs."""
    original = module.forward

    @functools.wraps(original)
    def forward(*args, **kwargs):
        computing(index)
        return original(*args, **kwargs)

    # A forward that replaces this one for a job (the lean forward, memory/chunked_blocks.py) tells the streamer too.
    forward.computing = functools.partial(computing, index)
    module.forward = forward


def fresh_parameter(old: torch.nn.Parameter, data: torch.Tensor) -> torch.nn.Parameter:
    """A Parameter over `data`, of the old one's class with its attributes (diffusers' GGUFParameter keeps its
    quantization type there, which its Linear reads to dequantize)."""
    if type(old) is torch.nn.Parameter:
        return torch.nn.Parameter(data, requires_grad=False)
    fresh = torch.Tensor._make_subclass(type(old), data, False)  # not the class's own constructor: it may want more
    fresh.__dict__.update(old.__dict__)
    return fresh


def _owner(module: torch.nn.Module, dotted: str) -> tuple[torch.nn.Module, str]:
    owner_path, _, name = dotted.rpartition(".")
    return (module.get_submodule(owner_path) if owner_path else module), name


def replace_parameter(module: torch.nn.Module, dotted: str, parameter: torch.nn.Parameter) -> None:
    owner, name = _owner(module, dotted)
    owner._parameters[name] = parameter


def set_buffer(module: torch.nn.Module, dotted: str, value: torch.Tensor) -> None:
    owner, name = _owner(module, dotted)
    owner._buffers[name] = value
