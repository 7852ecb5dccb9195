"""Fuzz targets and the dedicated large-budget runner (``python -m fuzz.run``)."""
