"""torch.fx side of portmeta (filled by the FX-adapter work)."""
