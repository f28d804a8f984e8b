"""Helpers shared by the preset entry scripts (in the tarball as ``_preset/``)."""
