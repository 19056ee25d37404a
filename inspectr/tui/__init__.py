"""Provides the inspector app (Textual): ``inspectr.tui.app.run_app(spec, options)``."""
