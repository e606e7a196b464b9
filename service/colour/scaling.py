"""The one luminance scale convention of itmstream.

Operators output *absolute display light* in cd/m² (nits), linear, BT.2020 primaries. SDR reference
(diffuse) white sits at :data:`SDR_WHITE_NITS` as ITU-R BT.2408-7 clause 2.2 recommends for SDR shown in an
HDR PQ container; highlights may rise up to the mastering peak. Nothing in the pipeline normalises a frame
by its own statistics, so a pixel's output never depends on other pixels' brightness in a way that flickers.
"""

SDR_WHITE_NITS = 203.0
"""ITU-R BT.2408 reference white (graphics white, 100% SDR) in cd/m²."""

DEFAULT_PEAK_NITS = 1000.0
"""Default mastering peak: the most common HDR10 grading target and BT.2446 Method A's design peak."""

PQ_PEAK_NITS = 10000.0
"""Absolute luminance of PQ code value 1.0 (SMPTE ST 2084)."""
