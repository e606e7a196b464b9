"""Container-level HDR10 metadata for MP4/MOV: ``mdcv`` and ``clli`` boxes in the video sample entry.

Players that read HDR metadata from the container (Apple's, browsers, Android's MediaExtractor) look for
these boxes; PyAV cannot attach the stream side data from which FFmpeg's muxer would write them, so they are
added here after muxing. FFmpeg writes the ``moov`` box after ``mdat`` unless asked for faststart, so growing
``moov`` moves no sample data and no chunk offset needs rewriting; a file laid out otherwise is left alone.
:func:`without_hdr10_boxes` hides them again (as ``free`` boxes) in a file that stream copy starts from.

References
----------
ISO/IEC 14496-12 clause 4.2 (box header) and 12.1.3 (VisualSampleEntry); ISO/IEC 14496-15 / ISO/IEC 23001-8
mdcv (MasteringDisplayColourVolumeBox) and clli (ContentLightLevelBox), as FFmpeg's mov muxer writes them.
"""

import struct
from pathlib import Path

from service.video.hdr10_metadata import ContentLightLevel, MasteringDisplay

_CONTAINERS = (b"moov", b"trak", b"mdia", b"minf", b"stbl")
_VIDEO_ENTRIES = (b"hvc1", b"hev1", b"av01")
_VISUAL_SAMPLE_ENTRY_SIZE = 86  # box header + the fixed VisualSampleEntry fields before child boxes
_HDR10_BOXES = (b"mdcv", b"clli")


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def mdcv_box(mastering: MasteringDisplay) -> bytes:
    """``mdcv``: G, B, R, white chromaticities in 0.00002 units, luminance in 0.0001 cd/m² (as HEVC SEI)."""
    (rx, ry), (gx, gy), (bx, by), (wx, wy) = mastering.primaries
    xy = [round(v * 50000) for v in (gx, gy, bx, by, rx, ry, wx, wy)]
    return _box(
        b"mdcv",
        struct.pack(">8HII", *xy, round(mastering.max_nits * 10000), round(mastering.min_nits * 10000)),
    )


def clli_box(light: ContentLightLevel) -> bytes:
    """``clli``: MaxCLL and MaxFALL as 16-bit cd/m² (0 = unknown)."""
    return _box(b"clli", struct.pack(">HH", *light.coded()))


def _children(buf: bytes | bytearray, start: int, end: int) -> list[tuple[int, int, bytes]]:
    """(offset, size, type) of the boxes in ``buf[start:end]``; raises ValueError on 64-bit sizes."""
    boxes = []
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", buf[pos : pos + 8])
        if size < 8:  # 1 = 64-bit largesize, 0 = to end of file: not inside moov from FFmpeg
            raise ValueError(f"unsupported box size {size} for '{kind!r}'")
        boxes.append((pos, size, kind))
        pos += size
    return boxes


def _find_video_entry(moov: bytearray) -> list[int] | None:
    """Offsets of moov, trak, mdia, minf, stbl, stsd and the HEVC/AV1 sample entry, or None."""
    for trak, _, kind in _children(moov, 8, len(moov)):
        if kind != b"trak":
            continue
        chain = [0, trak]
        node = trak
        for want in _CONTAINERS[2:]:
            size = struct.unpack(">I", moov[node : node + 4])[0]
            match = [o for o, _, k in _children(moov, node + 8, node + size) if k == want]
            if not match:
                break
            node = match[0]
            chain.append(node)
        else:
            size = struct.unpack(">I", moov[node : node + 4])[0]
            stsd = [o for o, _, k in _children(moov, node + 8, node + size) if k == b"stsd"]
            if not stsd:
                continue
            stsd_size = struct.unpack(">I", moov[stsd[0] : stsd[0] + 4])[0]
            entries = _children(moov, stsd[0] + 16, stsd[0] + stsd_size)  # full box + entry_count
            if entries and entries[0][2] in _VIDEO_ENTRIES:
                return [*chain, stsd[0], entries[0][0]]
    return None


def _hdr10_boxes(moov: bytearray, entry: int) -> list[int]:
    """Offsets of the ``mdcv`` and ``clli`` boxes among the children of the sample entry at ``entry``."""
    entry_size = struct.unpack(">I", moov[entry : entry + 4])[0]
    children = _children(moov, entry + _VISUAL_SAMPLE_ENTRY_SIZE, entry + entry_size)
    return [offset for offset, _, kind in children if kind in _HDR10_BOXES]


def without_hdr10_boxes(mp4: bytes) -> bytes:
    """``mp4`` with the ``mdcv``/``clli`` boxes of its video sample entry turned into ``free`` boxes.

    Renaming rather than removing keeps every box size and chunk offset valid, so nothing else in the file
    has to change, and a reader skips ``free`` boxes. Stream copy needs it: FFmpeg turns those boxes into
    stream side data when demuxing and writes them out again when a stream is created from the demuxed one
    as a template, so a file made that way would declare the source's content light level, and
    :func:`add_hdr10_boxes`, finding boxes already there, would not write the new one. Bytes that are not an
    MP4 laid out as expected (no ``moov``, no HEVC/AV1 track, 64-bit box sizes) are returned unchanged.
    """
    try:
        moovs = [(at, size) for at, size, kind in _children(mp4, 0, len(mp4)) if kind == b"moov"]
        if not moovs:
            return mp4
        at, size = moovs[0]
        moov = bytearray(mp4[at : at + size])
        chain = _find_video_entry(moov)
        if chain is None:
            return mp4
        for box in _hdr10_boxes(moov, chain[-1]):
            moov[box + 4 : box + 8] = b"free"
    except ValueError:
        return mp4
    return mp4[:at] + bytes(moov) + mp4[at + size :]


def add_hdr10_boxes(path: Path, mastering: MasteringDisplay, light: ContentLightLevel) -> bool:
    """Append ``mdcv`` and ``clli`` to the video sample entry of an MP4/MOV file, in place.

    Returns
    -------
    bool
        True if the boxes were written; False when the layout is not the expected one (``moov`` before
        ``mdat``, 64-bit box sizes, no HEVC/AV1 track, boxes already present), in which case the file is
        untouched and the SEI/OBU metadata remains the only copy.
    """
    with path.open("r+b") as f:
        top = []
        pos = 0
        end = f.seek(0, 2)
        while pos + 8 <= end:
            f.seek(pos)
            size, kind = struct.unpack(">I4s", f.read(8))
            if size == 1:
                size = struct.unpack(">Q", f.read(8))[0]
            elif size == 0:
                size = end - pos
            top.append((pos, size, kind))
            pos += size
        kinds = [k for _, _, k in top]
        if b"moov" not in kinds or b"mdat" not in kinds or kinds.index(b"moov") < kinds.index(b"mdat"):
            return False
        moov_at, moov_size, _ = top[kinds.index(b"moov")]
        if moov_at + moov_size != end:  # something after moov would have to move
            return False
        f.seek(moov_at)
        moov = bytearray(f.read(moov_size))
        try:
            chain = _find_video_entry(moov)
        except ValueError:
            return False
        if chain is None:
            return False
        entry = chain[-1]
        if _hdr10_boxes(moov, entry):
            return False
        entry_size = struct.unpack(">I", moov[entry : entry + 4])[0]
        extra = mdcv_box(mastering) + clli_box(light)
        for offset in chain:  # every ancestor grows by the inserted bytes
            size = struct.unpack(">I", moov[offset : offset + 4])[0]
            moov[offset : offset + 4] = struct.pack(">I", size + len(extra))
        at = entry + entry_size
        moov[at:at] = extra
        f.seek(moov_at)
        f.write(moov)
    return True
