"""torch.compile's bookkeeping: room for every graph the report compiles, and what dynamo
compiled, for the meta block."""
from __future__ import annotations

from typing import Optional


def allow_recompiles(limit: int = 64) -> None:
    """Every (precision, all-patch or gathered) graph of forward_tokens is a dynamo cache
    entry of one code object; past dynamo's limit (8) it would run eager without a word
    and the compiled timings would be eager ones."""
    import torch._dynamo

    name = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    setattr(torch._dynamo.config, name, max(limit, getattr(torch._dynamo.config, name)))


def dynamo_stats() -> Optional[dict]:
    """Frames dynamo compiled and the graphs it produced (None where torch lacks them)."""
    try:
        from torch._dynamo.utils import counters
        return {"frames": dict(counters["frames"]), "unique_graphs": counters["stats"].get("unique_graphs", 0)}
    except Exception:  # a private counter; its absence must not cost the report
        return None
