"""Provides the findings: probe and training measurements -> problems, each blamed on one module path (pure rules)."""
