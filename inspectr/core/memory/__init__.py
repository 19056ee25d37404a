"""Provides what training costs in memory: the estimate built on the probe's saved bytes, counting passes at other batch sizes and dtypes, and the largest batch that fits."""
