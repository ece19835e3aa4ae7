"""linkage stage."""
