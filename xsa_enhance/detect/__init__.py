"""Source detection on counts images and on their enhanced images (issue 17).

:mod:`~xsa_enhance.detect.find` finds candidates (photutils peak finding) and decides;
:mod:`~xsa_enhance.detect.photometry` measures them on the input counts with Poisson
statistics; :mod:`~xsa_enhance.detect.validate` measures completeness and purity on simulated
fields and purity against an independent deep image on real observations.
"""
