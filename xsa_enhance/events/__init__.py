"""Event processing: read PIEVLI, screen, remove flares, cut 10 ks slices, bin on the DET grid.

Public API (see ``docs/events.md``)::

    from xsa_enhance.events import EventsConfig, process_event_list, write_image_fits
    obs = process_event_list("P0123700101PNS003PIEVLI0000.FTZ",
                             "P0123700101PNS003FBKTSR0000.FTZ", config=EventsConfig())
    for image in obs.slices:
        write_image_fits(image, f"out/{image.filename}")
"""

from xsa_enhance.events.binning import bin_events, screen_and_bin, screen_flat_index
from xsa_enhance.events.expression import (
    DEFAULT_EXPRESSION,
    Expression,
    ExpressionError,
    parse_expression,
)
from xsa_enhance.events.fitsio import read_image_fits, write_image_fits
from xsa_enhance.events.gti import (
    flare_gtis,
    gti_exposure,
    in_gtis,
    intersect_gtis,
    normalize_gtis,
    read_fbktsr,
    union_gtis,
)
from xsa_enhance.events.process import process_event_list
from xsa_enhance.events.reader import ACCEPTED_SUBMODES, DEFAULT_COLUMNS, read_event_list
from xsa_enhance.events.slicing import make_slices, slice_boundaries, slice_lengths
from xsa_enhance.events.types import (
    DEFAULT_LIGHTCURVE_EXPRESSION,
    EventList,
    EventsConfig,
    ObservationMeta,
    ProcessedObservation,
    Slice,
    SliceImage,
)
from xsa_enhance.formats.quicklook import write_image_png
from xsa_enhance.formats.skywcs import sky_wcs_header

__all__ = [
    "ACCEPTED_SUBMODES",
    "DEFAULT_COLUMNS",
    "DEFAULT_EXPRESSION",
    "DEFAULT_LIGHTCURVE_EXPRESSION",
    "EventList",
    "EventsConfig",
    "Expression",
    "ExpressionError",
    "ObservationMeta",
    "ProcessedObservation",
    "Slice",
    "SliceImage",
    "bin_events",
    "flare_gtis",
    "gti_exposure",
    "in_gtis",
    "intersect_gtis",
    "make_slices",
    "normalize_gtis",
    "parse_expression",
    "process_event_list",
    "read_event_list",
    "read_fbktsr",
    "read_image_fits",
    "screen_and_bin",
    "screen_flat_index",
    "sky_wcs_header",
    "slice_boundaries",
    "slice_lengths",
    "union_gtis",
    "write_image_fits",
    "write_image_png",
]
