"""A KV cache with one row ("slot") per running sequence, each sequence at its own length.

Layout per layer: keys and values of shape (S, H_kv, L, D): S slots, capacity L positions (grown by doubling,
up to the context window). The running sequences always occupy rows 0..B-1: a finished sequence's row is
refilled by moving the last row into it, so a decode step reads the views [:B, :, :T] without a gather.

A decode step writes each sequence's new key at its own position `pos[b]` and attends over the first T =
max(pos)+1 positions; the scheduler passes a (B, 1, 1, T) mask hiding positions past each row's length.
A sequence enters a slot by copying in its row of a DynamicCache prefill: prompts admitted together are
prefilled in one right-padded batch, so a row's first T_i keys are its prompt's own (it never attends to the
padding after it); a lone prompt is unpadded, exactly `model.generate`'s prefill.

This plugs into transformers through its public `Cache` / `CacheLayerMixin` classes: the attention modules
call `update(key_states, value_states, layer_idx)` and get back the keys and values to attend over.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, CacheLayerMixin


class SlotLayer(CacheLayerMixin):
    is_sliding = False

    def __init__(self, owner: SlotCache):
        super().__init__()
        self.owner = owner

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        raise RuntimeError("SlotCache layers are allocated by SlotCache.put, not lazily")

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """key_states: (B, H_kv, 1, D) for the running rows -> keys, values (B, H_kv, T, D)."""
        o = self.owner
        self.keys[o.batch_rows, :, o.batch_pos] = key_states[:, :, 0]
        self.values[o.batch_rows, :, o.batch_pos] = value_states[:, :, 0]
        return self.keys[: o.batch, :, : o.width], self.values[: o.batch, :, : o.width]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.owner.width, 0

    def get_seq_length(self) -> int:
        return self.owner.width - 1

    def get_max_length(self) -> int:
        return -1

    get_max_cache_shape = get_max_length  # its name (abstract) before transformers 5.2x; see pixiu/compat.py

    def grow(self, capacity: int) -> None:
        for name in ("keys", "values"):
            old = getattr(self, name)
            new = old.new_zeros(old.shape[0], old.shape[1], capacity, old.shape[3])
            new[:, :, : old.shape[2]] = old
            setattr(self, name, new)


class SlotCache(Cache):
    def __init__(self, num_layers: int, slots: int, max_len: int, device: torch.device):
        super().__init__(layers=[SlotLayer(self) for _ in range(num_layers)])
        self.slots, self.max_len = slots, max_len
        self.pos = torch.zeros(slots, dtype=torch.long, device=device)  # (S,) where each row writes next
        self.rows = torch.arange(slots, device=device)  # (S,) row indices, sliced to the batch
        self.batch = 0  # B: running rows, set by `bind` before each decode step
        self.width = 0  # T: positions attended over in this step
        self.capacity = 0  # L
        self.batch_rows = self.batch_pos = self.rows[:0]

    def put(self, slot: int, prefill: Cache, length: int, source: int = 0) -> None:
        """Copy row `source` of a prefill cache, its first `length` positions, into `slot`."""
        self.reserve(length + 1)
        for layer, src in zip(self.layers, prefill.layers):
            if layer.keys is None:  # the first sequence fixes shapes, dtype and device
                k = src.keys
                layer.keys = k.new_zeros(self.slots, k.shape[1], self.capacity, k.shape[3])
                layer.values = src.values.new_zeros(layer.keys.shape)
                layer.is_initialized = True
            layer.keys[slot, :, :length] = src.keys[source, :, :length]
            layer.values[slot, :, :length] = src.values[source, :, :length]
        self.pos[slot] = length

    def move(self, src: int, dst: int, length: int) -> None:
        """Row `src` (holding `length` positions) takes over row `dst`: used to keep running rows contiguous."""
        for layer in self.layers:
            layer.keys[dst, :, :length] = layer.keys[src, :, :length]
            layer.values[dst, :, :length] = layer.values[src, :, :length]
        self.pos[dst] = self.pos[src]

    def reserve(self, length: int) -> None:
        """Make room for `length` positions per slot (doubling, capped at the context window)."""
        if length <= self.capacity:
            return
        self.capacity = min(max(length, 2 * self.capacity, 64), max(self.max_len, length))
        for layer in self.layers:
            if layer.keys is not None:
                layer.grow(self.capacity)

    def bind(self, batch: int, width: int) -> None:
        """Before a decode step: rows 0..batch-1 run; they attend over `width` positions."""
        self.reserve(width)
        self.batch, self.width = batch, width
        self.batch_rows, self.batch_pos = self.rows[:batch], self.pos[:batch]  # views: pos advances in place

    def release(self) -> None:
        """Drop the tensors when nothing runs, so an idle server holds no KV memory."""
        for layer in self.layers:
            layer.keys = layer.values = None
            layer.is_initialized = False
        self.capacity = 0
