"""Provides the app's screens: the sample gallery, help, and the export dialog."""
