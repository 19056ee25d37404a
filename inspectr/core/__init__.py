"""Provides inspectr as a library, torch only (never rich or textual): one subpackage per stage, in the order the data flows (see the README's Architecture)."""
