"""Named ViT sizes (and batch sizes): ``gym.make(id, preset="tiny")``, the CLI's
``--preset`` and the comparison scripts.

``paper`` is AgentViT's CIFAR-10 setup (docs/AGENTVIT.md); ``small`` fits a CPU budget of
minutes on digits; ``tiny`` is for smoke tests.
"""
PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(dim=32, depth=2, heads=2, dim_head=16, mlp_dim=64, batch_size=16),
    "small": dict(dim=64, depth=4, heads=4, dim_head=32, mlp_dim=256, batch_size=32),
    "paper": dict(dim=128, depth=6, heads=16, dim_head=64, mlp_dim=512, batch_size=128),
}


def with_preset(preset, kwargs: dict) -> dict:
    """The env's keywords with a preset's values under them (the keywords given win);
    ``preset=None``: the keywords as they are."""
    if preset is None:
        return kwargs
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)} or None, got {preset!r}")
    return {**PRESETS[preset], **kwargs}
