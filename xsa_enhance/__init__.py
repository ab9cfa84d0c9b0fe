"""xsa-enhance: super-resolution and de-noising of XMM-Newton EPIC-pn archive images.

The package is split into one subpackage per stage of the data flow (see
``docs/architecture.md``):

``archive``     TAP selection and PPS download through astroquery
``standin``     a local XSA-compatible server for offline use and tests
``instrument``  the EPIC-pn model (geometry, grids, mask, PSF, vignetting, background)
``simulate``    the event-level and image-level simulator
``events``      event screening, flare GTIs, exposure slices, binning
``models``      XMM-SuperRes / XMM-DeNoise networks, normalisation, inference
``store``       Zarr product store and catalogs
``pipeline``    stages wired together; in-process and Dask executors
``training``    datasets, losses, training and evaluation
``cli``         the ``xsa-enhance`` command
"""

from xsa_enhance._version import __version__

__all__ = ["__version__"]
