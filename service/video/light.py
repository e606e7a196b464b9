"""MaxCLL / MaxFALL of the frames as they are encoded, and a remux that writes them into the bitstream.

CTA-861.3 describes the master: so both numbers are measured on the full-resolution frames handed to the
encoder, after 10-bit PQ quantisation and before chroma subsampling (:class:`LightMeter`, fed from the encode
loop). Measuring the decoded output instead would count the overshoot of 4:2:0 chroma reconstruction at
saturated edges (a ``bt2446a`` conversion of the shared ferris clip measured 1604 cd/m² that way against a
1000 cd/m² master), and that overshoot depends on each decoder's upsampling filter, so two tools would
measure two values. Neither number is ever written above the mastering display's peak.

The encoders take the light level as a parameter before the first frame, so the pipeline encodes with a
placeholder and :func:`rewrite_content_light` then rewrites every content light level SEI (HEVC, also the
copy in the hvcC record) or metadata OBU (AV1) while remuxing, copying all other packets unchanged.

References
----------
CTA-861.3-A clause 6.9 and annex P (MaxCLL, MaxFALL); ITU-R BT.2100-2 table 9 (10-bit narrow-range
quantisation, D = round(876 E' + 64)); SMPTE ST 2084 (PQ).
"""

import contextlib
import math
from pathlib import Path

import av
import numba
import numpy as np
import numpy.typing as npt

from service.colour.pq import eotf_st2084
from service.video.encode import copy_stream_properties
from service.video.errors import map_av_errors
from service.video.hdr10_metadata import (
    ContentLightLevel,
    MasteringDisplay,
    hvcc_length_size,
    patch_av1_obus,
    patch_av1c,
    patch_hevc_access_unit,
    patch_hvcc,
)
from service.video.mp4_boxes import add_hdr10_boxes

CODE_BLACK = 64
"""10-bit narrow-range code of PQ signal 0 (BT.2100 table 9: 64 + 876 E')."""
CODE_PEAK = 940
"""10-bit narrow-range code of PQ signal 1 (10000 cd/m²)."""
_CODES = np.arange(CODE_BLACK, CODE_PEAK + 1)
LEVELS = eotf_st2084((_CODES - CODE_BLACK) / 876.0)
"""Light of each 10-bit code, cd/m² (index 0 is code 64)."""
THRESHOLDS = eotf_st2084((_CODES[:-1] + 0.5 - CODE_BLACK) / 876.0)
"""Light at which the code rounds up from ``64 + i`` to ``65 + i``: a pixel's code is 64 plus the number of
thresholds at or below its light (round half up)."""

# The kernel works on float32 bit patterns, whose integer order is the order of non-negative floats. A table
# indexed like service.colour.kernels' PQ table (exponent and top mantissa bits: 1024 segments per octave,
# each narrower than any code step) gives the code at each segment's start; at most a step or two follows.
_SEGMENT_BITS = 13
_LOW_BITS = (127 - 17) << 23  # 2^-17 cd/m², below the first threshold (1.6e-5 cd/m²): code 64 under it
_HIGH_BITS = (127 + 14) << 23  # 2^14 cd/m², above 10000: code 940 at and over it
_INF_BITS = 0x7F800000  # larger patterns are NaN or negative: black, as the encoder's kernel treats them
_THRESHOLD_BITS = THRESHOLDS.astype(np.float32).view(np.uint32).astype(np.int64)
_SEGMENT_CODES = np.searchsorted(
    _THRESHOLD_BITS,
    _LOW_BITS + (np.arange(((_HIGH_BITS - _LOW_BITS) >> _SEGMENT_BITS) + 1, dtype=np.int64) << _SEGMENT_BITS),
    side="right",
).astype(np.int64)


@numba.njit(parallel=True, cache=True)
def _quantised_light(bits, segments, thresholds, levels, row_top, row_sum):  # type: ignore[no-untyped-def]
    h, w, _ = bits.shape
    n = thresholds.shape[0]
    for row in numba.prange(h):
        top = 0
        total = 0.0
        for col in range(w):
            # max(R, G, B): PQ and the rounding are monotonic, so the brightest channel has the largest code.
            m = np.int64(0)
            for c in range(3):
                v = np.int64(bits[row, col, c])
                if v <= _INF_BITS and v > m:
                    m = v
            if m < _LOW_BITS:
                code = 0
            elif m >= _HIGH_BITS:
                code = n
            else:
                code = segments[(m - _LOW_BITS) >> _SEGMENT_BITS]
                while code < n and m >= thresholds[code]:
                    code += 1
            top = max(top, code)
            total += levels[code]
        row_top[row] = top
        row_sum[row] = total


def quantised_light(nits: npt.NDArray[np.float32]) -> tuple[float, float]:
    """Brightest pixel and average light of one frame after 10-bit PQ quantisation, in cd/m².

    Each pixel's light is max(R, G, B) of its 10-bit narrow-range PQ code values, decoded back to cd/m²
    (CTA-861.3 annex P on the full-resolution R'G'B' frame, before any chroma subsampling).

    Parameters
    ----------
    nits : numpy.ndarray
        H x W x 3 float32, linear BT.2020 RGB in cd/m² (what the encoder's kernel quantises); NaN and
        negative values count as 0, values above 10000 as 10000.

    Returns
    -------
    tuple of float
        (max light, average light) of the frame.

    Raises
    ------
    ValueError
        If the frame is not H x W x 3 float32.
    """
    if nits.dtype != np.float32 or nits.ndim != 3 or nits.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 float32 frame, got {nits.dtype} {nits.shape}")
    h = nits.shape[0]
    row_top = np.empty(h, np.int64)
    row_sum = np.empty(h, np.float64)
    bits = np.ascontiguousarray(nits).view(np.uint32)
    _quantised_light(bits, _SEGMENT_CODES, _THRESHOLD_BITS, LEVELS, row_top, row_sum)
    return float(LEVELS[row_top.max()]), float(row_sum.sum() / (h * nits.shape[1]))


class LightMeter:
    """MaxCLL / MaxFALL accumulated frame by frame from what the encoder is given.

    Examples
    --------
    >>> meter = LightMeter()
    >>> meter.add(np.full((2, 2, 3), 203.0, np.float32))
    >>> meter.content_light(1000.0)
    ContentLightLevel(max_cll=203, max_fall=203)
    """

    def __init__(self) -> None:
        self.max_light = 0.0
        """Brightest quantised pixel so far, cd/m² (not clamped to the mastering peak)."""
        self.max_average = 0.0
        """Highest frame-average light so far, cd/m²."""
        self.frames = 0

    def add(self, nits: npt.NDArray[np.float32]) -> None:
        """Measure one frame (H x W x 3 float32 cd/m²) as :func:`quantised_light` does."""
        light, average = quantised_light(nits)
        self.max_light = max(self.max_light, light)
        self.max_average = max(self.max_average, average)
        self.frames += 1

    def content_light(self, peak_nits: float) -> ContentLightLevel:
        """MaxCLL / MaxFALL in whole cd/m², neither above ``peak_nits`` (the mastering display's peak).

        Rounding the peak itself to a 10-bit code can land up to half a code step above it (1000 cd/m² is
        code 722.6, and code 723 is 1004 cd/m²); the clamp keeps that out of the metadata.
        """
        cap = math.floor(peak_nits)
        light = ContentLightLevel.from_measurements(self.max_light, self.max_average)
        max_cll = min(light.max_cll or 0, cap)
        return ContentLightLevel(max_cll, min(light.max_fall or 0, max_cll))

    def over_peak(self, peak_nits: float) -> str | None:
        """A warning when the frames are brighter than the mastering peak by more than the quantisation."""
        if self.max_light <= peak_nits * 1.01:
            return None
        return (
            f"the brightest pixel is {self.max_light:.0f} cd/m², above the {peak_nits:g} cd/m² mastering "
            f"peak; MaxCLL is written as {math.floor(peak_nits)} and displays will clip above it"
        )


def _patched_extradata(codec: str, extradata: bytes, light: ContentLightLevel) -> bytes:
    if codec == "hevc":
        return patch_hvcc(extradata, light)
    if codec == "av1":
        return patch_av1c(extradata, light)
    return extradata


def make_metadata_template(
    src: Path, dst: Path, mastering: MasteringDisplay, light: ContentLightLevel
) -> bool:
    """Write a one-packet MP4 of ``src``'s video whose stream carries ST 2086 / CTA-861.3 side data.

    PyAV cannot attach stream side data, but the MP4 demuxer exports ``mdcv``/``clli`` boxes as exactly
    that, and a stream created from the demuxed stream as template keeps it: so the Matroska muxer writes
    MasteringMetadata, MaxCLL and MaxFALL into the track's Colour element when this file's video stream is
    the template (see :func:`rewrite_content_light`).

    Returns
    -------
    bool
        False when the boxes could not be added (the caller then keeps in-band metadata only).

    Raises
    ------
    OutputError
        If the files cannot be read or written.
    """
    with (
        map_av_errors("output", dst.name),
        av.open(str(src)) as inp,
        av.open(str(dst), "w", format="mp4") as out,
    ):
        video = inp.streams.video[0]
        target = out.add_stream_from_template(video, opaque=True)
        codec = video.codec_context.name
        target.codec_context.extradata = _patched_extradata(
            codec, bytes(video.codec_context.extradata or b""), light
        )
        if codec == "hevc":
            target.codec_context.codec_tag = "hvc1"
        for packet in inp.demux(video):
            if packet.size:
                packet.stream = target
                out.mux(packet)
                break
    return add_hdr10_boxes(dst, mastering, light)


def rewrite_content_light(
    src: Path, dst: Path, *, format: str, light: ContentLightLevel, video_template: Path | None = None
) -> int:
    """Remux ``src`` into ``dst`` with every content light level in the video bitstream set to ``light``.

    ``video_template`` (from :func:`make_metadata_template`) supplies the video stream's parameters,
    including its HDR side data, instead of ``src``.

    Returns
    -------
    int
        Video packets copied (one per frame for both encoders), so the caller can check the count.

    Raises
    ------
    OutputError
        If either file cannot be read or written.
    """
    with (
        map_av_errors("output", dst.name),
        contextlib.ExitStack() as files,
    ):
        inp = files.enter_context(av.open(str(src)))
        out = files.enter_context(av.open(str(dst), "w", format=format))
        template = None
        if video_template is not None:
            template = files.enter_context(av.open(str(video_template))).streams.video[0]
        video = inp.streams.video[0]
        codec = video.codec_context.name
        extradata = bytes(video.codec_context.extradata or b"")
        length_size = hvcc_length_size(extradata)
        mapping = {}
        video_packets = 0
        for stream in inp.streams:
            # opaque: reuse the demuxed stream's codec (libdav1d has no encoder of that name to look up).
            source = template if stream is video and template is not None else stream
            target = out.add_stream_from_template(source, opaque=True)
            copy_stream_properties(stream, target)
            if stream is video:
                target.codec_context.extradata = _patched_extradata(codec, extradata, light)
                if codec == "hevc" and format in ("mp4", "mov"):
                    target.codec_context.codec_tag = "hvc1"
            mapping[stream.index] = target
        for packet in inp.demux():
            if packet.size == 0:
                continue
            target = mapping[packet.stream.index]
            if packet.stream is video:
                video_packets += 1
                data = bytes(packet)
                patched = (
                    patch_hevc_access_unit(data, light, length_size)
                    if codec == "hevc"
                    else patch_av1_obus(data, light)
                )
                new = av.Packet(patched)
                new.pts, new.dts, new.duration = packet.pts, packet.dts, packet.duration
                new.time_base = packet.time_base
                new.is_keyframe = packet.is_keyframe
                packet = new
            packet.stream = target
            out.mux(packet)
    return video_packets
