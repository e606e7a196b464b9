"""MaxCLL / MaxFALL measured from an encoded HDR10 file, and a remux that writes them into its bitstream.

CTA-861.3 defines both numbers on the frames a display will show, so they are measured on the *decoded
output*, not on the operator's float frames: compression moves the brightest pixels by a code value or
two, which is already about 1 % of light at 1000 cd/m². The remux rewrites every content light level SEI
(HEVC, also the copy in the hvcC record) or metadata OBU (AV1) and copies all other packets unchanged.
"""

import contextlib
import threading
from pathlib import Path

import av
import numpy as np

from service.colour.kernels import light_levels_yuv420p10
from service.errors import JobCancelledError
from service.video.encode import copy_stream_properties
from service.video.errors import map_av_errors
from service.video.frames import yuv420p10_planes
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


def measure_content_light(
    path: Path, *, threads: int = 0, cancel: threading.Event | None = None
) -> tuple[ContentLightLevel, int]:
    """Decode the first video stream of an HDR10 file and return its content light level and frame count.

    MaxCLL is the maximum over frames of the brightest pixel's max(R, G, B); MaxFALL the maximum over frames
    of the frame-average max(R, G, B) (CTA-861.3 annex P), both in cd/m², rounded to integers.

    Raises
    ------
    JobCancelledError
        If ``cancel`` is set (checked every 16 frames).
    OutputError, EngineError
        If the file cannot be decoded.
    """
    max_light = 0.0
    max_average = 0.0
    frames = 0
    with map_av_errors("output", path.name), av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        for frame in container.decode(stream):
            y, u, v = (np.ascontiguousarray(p) for p in yuv420p10_planes(frame))
            light, average = light_levels_yuv420p10(y, u, v)
            max_light = max(max_light, light)
            max_average = max(max_average, average)
            frames += 1
            if cancel is not None and frames % 16 == 0 and cancel.is_set():
                raise JobCancelledError("conversion cancelled")
    return ContentLightLevel.from_measurements(max_light, max_average), frames


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
) -> None:
    """Remux ``src`` into ``dst`` with every content light level in the video bitstream set to ``light``.

    ``video_template`` (from :func:`make_metadata_template`) supplies the video stream's parameters,
    including its HDR side data, instead of ``src``.

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
