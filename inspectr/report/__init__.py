"""Provides the report layer: rich renderables and exports (never imports textual)."""
