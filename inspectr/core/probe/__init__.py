"""Provides the probe: one forward (and backward) pass with hooks, its statistics, FLOPs, saved bytes and culprits -> ``ProbeResult``."""
