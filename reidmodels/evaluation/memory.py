"""How much of a distance matrix is worked on at once: the block arithmetic ranking and
re-ranking share, so evaluation holds a bounded working set at any test size."""

from __future__ import annotations

import torch

__all__ = ["DEFAULT_MEMORY", "DENSE_BYTES", "default_memory", "rows_per_block"]

DEFAULT_MEMORY = 1 << 30  # bytes for the working set of one block (features not counted)
DENSE_BYTES = 10  # per (query, gallery) cell of a block: distance, candidate mask, match mask, slack


def default_memory(device: torch.device) -> int:
    """1 GiB on the CPU; on a GPU a quarter of its free memory (at least 1 GiB)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(DEFAULT_MEMORY, free // 4)
    return DEFAULT_MEMORY


def rows_per_block(gallery: int, memory: int, *, cell_bytes: int = DENSE_BYTES) -> int:
    """How many query rows of ``gallery`` distances fit ``memory`` bytes (at least 1)."""
    return max(1, int(memory // (max(gallery, 1) * cell_bytes)))
