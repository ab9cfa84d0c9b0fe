"""File formats and coordinate conventions shared by every stage.

One module per fact: the archive's PPS product files (names, columns, header keys), the sky
WCS of the detector grid, and the image/PNG export path. Stages import from here; this package
imports no stage.
"""
