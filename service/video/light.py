"""MaxCLL / MaxFALL of the frames as they are encoded, and a remux that writes them into the bitstream.

CTA-861.3 describes the master: so both numbers are measured on the full-resolution frames handed to the
encoder, after 10-bit PQ quantisation and before chroma subsampling, by the kernel that makes the encoder's
planes (:func:`service.colour.kernels.nits_to_yuv420p10_light`, in the same pass); :class:`LightMeter` keeps
their maxima over the stream. Measuring the decoded output instead would count the overshoot of 4:2:0 chroma
reconstruction at saturated edges (a ``bt2446a`` conversion of the shared ferris clip measured 1604 cd/m² that
way against a 1000 cd/m² master), and that overshoot depends on each decoder's upsampling filter, so two
tools would measure two values. Neither number is ever written above the mastering display's peak.

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

from service.colour.kernels import FrameLight
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


class LightMeter:
    """MaxCLL / MaxFALL accumulated frame by frame from what the encoder is given.

    Examples
    --------
    >>> meter = LightMeter()
    >>> meter.add(FrameLight(max_nits=203.3, average_nits=101.0))
    >>> meter.content_light(1000.0)
    ContentLightLevel(max_cll=203, max_fall=101)
    """

    def __init__(self) -> None:
        self.max_light = 0.0
        """Brightest quantised pixel so far, cd/m² (not clamped to the mastering peak)."""
        self.max_average = 0.0
        """Highest frame-average light so far, cd/m²."""
        self.frames = 0

    def add(self, light: FrameLight) -> None:
        """Count one frame's light, as the HDR10 kernel measured it while quantising the frame."""
        self.max_light = max(self.max_light, light.max_nits)
        self.max_average = max(self.max_average, light.average_nits)
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
