"""HDR10 static metadata: ST 2086 mastering display, CTA-861.3 content light level, and bitstream patchers.

PyAV cannot attach side data to frames or containers, so the metadata travels inside the elementary stream:
HEVC SEI messages (mastering display colour volume, payloadType 137; content light level, 144) and AV1
metadata OBUs (METADATA_TYPE_HDR_MDCV = 2, METADATA_TYPE_HDR_CLL = 1). The encoders write them from their
parameter strings; MaxCLL/MaxFALL are known once every frame is encoded, so :func:`patch_hevc_access_unit`,
:func:`patch_hvcc` and :func:`patch_av1_obus` rewrite the light level in already encoded data.

References
----------
SMPTE ST 2086:2018; CTA-861.3-A clause 6.9 and annex P; ITU-T H.265 (v8) clauses 7.3.1 (NAL unit and
emulation prevention), 7.3.5 (SEI message), D.2.28 (content_light_level_info); ISO/IEC 14496-15 clause
8.3.3 (HEVCDecoderConfigurationRecord, "hvcC"); AV1 bitstream spec clauses 5.3 (OBU header), 4.10.5 (leb128)
and 5.8.3 (metadata_hdr_cll).
"""

from dataclasses import dataclass, field

from service.colour.primaries import PRIMARIES_DISPLAY_P3, Chromaticities

HEVC_NAL_PREFIX_SEI = 39
HEVC_NAL_SUFFIX_SEI = 40
SEI_CONTENT_LIGHT_LEVEL = 144
AV1_OBU_METADATA = 5
AV1_METADATA_HDR_CLL = 1
MAX_LIGHT_LEVEL = 0xFFFF  # both fields are u(16) in H.265 and AV1


@dataclass(frozen=True)
class MasteringDisplay:
    """SMPTE ST 2086 colour volume of the display the content is declared to be mastered on.

    The default is what most HDR10 content declares: Display P3 primaries, D65, 1000 / 0.0001 cd/m².
    """

    primaries: Chromaticities = PRIMARIES_DISPLAY_P3
    max_nits: float = 1000.0
    min_nits: float = 0.0001

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_nits < self.max_nits <= 10000.0:
            raise ValueError(
                f"mastering luminance {self.min_nits}..{self.max_nits} cd/m² is invalid; "
                "expected 0 <= min < max <= 10000"
            )

    def x265(self) -> str:
        """``master-display`` value for x265: chromaticities in 0.00002 units, luminance in 0.0001 cd/m²."""
        (rx, ry), (gx, gy), (bx, by), (wx, wy) = self.primaries

        def xy(x: float, y: float) -> str:
            return f"({round(x * 50000)},{round(y * 50000)})"

        return (
            f"G{xy(gx, gy)}B{xy(bx, by)}R{xy(rx, ry)}WP{xy(wx, wy)}"
            f"L({round(self.max_nits * 10000)},{round(self.min_nits * 10000)})"
        )

    def svtav1(self) -> str:
        """``mastering-display`` value for SVT-AV1: plain chromaticities and cd/m²."""
        (rx, ry), (gx, gy), (bx, by), (wx, wy) = self.primaries
        return (
            f"G({gx:.4f},{gy:.4f})B({bx:.4f},{by:.4f})R({rx:.4f},{ry:.4f})WP({wx:.4f},{wy:.4f})"
            f"L({self.max_nits:g},{self.min_nits:g})"
        )


@dataclass(frozen=True)
class ContentLightLevel:
    """CTA-861.3 MaxCLL / MaxFALL in whole cd/m²; ``None`` means not measured (never a 0 sentinel here)."""

    max_cll: int | None = None
    max_fall: int | None = None

    @classmethod
    def from_measurements(cls, max_light: float, max_average: float) -> "ContentLightLevel":
        """Round measured maxima to the integers the SEI/OBU carries, clamped to 16 bits."""
        return cls(
            min(max(round(max_light), 0), MAX_LIGHT_LEVEL), min(max(round(max_average), 0), MAX_LIGHT_LEVEL)
        )

    def coded(self) -> tuple[int, int]:
        """Values as written to the bitstream, where 0 is the standard's own "unknown"."""
        return (self.max_cll or 0, self.max_fall or 0)


@dataclass(frozen=True)
class HDR10Metadata:
    """Everything HDR10 declares statically about a stream."""

    mastering: MasteringDisplay = field(default_factory=MasteringDisplay)
    light: ContentLightLevel = field(default_factory=ContentLightLevel)


def x265_params(metadata: HDR10Metadata) -> dict[str, str]:
    """x265 parameters for HDR10 signalling (tags in the VUI, SEI with every keyframe's headers)."""
    cll, fall = metadata.light.coded()
    return {
        "hdr10": "1",
        "hdr10-opt": "1",
        "repeat-headers": "1",
        "colorprim": "bt2020",
        "transfer": "smpte2084",
        "colormatrix": "bt2020nc",
        "range": "limited",
        "chromaloc": "0",
        "master-display": metadata.mastering.x265(),
        "max-cll": f"{cll},{fall}",
    }


def svtav1_params(metadata: HDR10Metadata) -> dict[str, str]:
    """SVT-AV1 parameters for HDR10 signalling (sequence header colour config + metadata OBUs)."""
    cll, fall = metadata.light.coded()
    return {
        "color-primaries": "9",
        "transfer-characteristics": "16",
        "matrix-coefficients": "9",
        "color-range": "0",
        "chroma-sample-position": "1",  # "vertical" = H.273 type 0 (left), what our kernels produce
        "mastering-display": metadata.mastering.svtav1(),
        "content-light": f"{cll},{fall}",
    }


def join_params(params: dict[str, str]) -> str:
    """``k=v:k=v`` as both encoders' ``*-params`` options expect."""
    return ":".join(f"{k}={v}" for k, v in params.items())


# --- HEVC -----------------------------------------------------------------------------------------------


def unescape_rbsp(ebsp: bytes) -> bytes:
    """Drop emulation prevention bytes (``00 00 03`` -> ``00 00``), H.265 clause 7.4.2."""
    out = bytearray()
    zeros = 0
    for byte in ebsp:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def escape_rbsp(rbsp: bytes) -> bytes:
    """Insert emulation prevention bytes so no ``00 00 0x`` (x <= 3) appears in the NAL payload."""
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _read_sei_number(rbsp: bytes | bytearray, pos: int) -> tuple[int, int]:
    value = 0
    while rbsp[pos] == 0xFF:
        value += 255
        pos += 1
    return value + rbsp[pos], pos + 1


def patch_hevc_sei_nal(nal: bytes, light: ContentLightLevel) -> bytes:
    """Return SEI NAL unit ``nal`` (2-byte header + EBSP) with every content_light_level_info rewritten.

    Other NAL units and SEI messages are returned unchanged; the result may differ in length because
    emulation prevention is redone on the rebuilt RBSP.
    """
    if len(nal) < 3 or (nal[0] >> 1) & 0x3F not in (HEVC_NAL_PREFIX_SEI, HEVC_NAL_SUFFIX_SEI):
        return nal
    rbsp = bytearray(unescape_rbsp(nal[2:]))
    cll, fall = light.coded()
    pos = 0
    changed = False
    # sei_rbsp(): messages until only rbsp_trailing_bits (0x80) remain.
    while pos < len(rbsp) and not (rbsp[pos] == 0x80 and pos == len(rbsp) - 1):
        payload_type, pos = _read_sei_number(rbsp, pos)
        payload_size, pos = _read_sei_number(rbsp, pos)
        if payload_type == SEI_CONTENT_LIGHT_LEVEL and payload_size == 4:
            rbsp[pos : pos + 4] = cll.to_bytes(2, "big") + fall.to_bytes(2, "big")
            changed = True
        pos += payload_size
    if not changed:
        return nal
    return nal[:2] + escape_rbsp(bytes(rbsp))


def _is_annexb(data: bytes) -> bool:
    return data[:3] == b"\x00\x00\x01" or data[:4] == b"\x00\x00\x00\x01"


def patch_hevc_access_unit(data: bytes, light: ContentLightLevel, length_size: int = 4) -> bytes:
    """Rewrite the content light level SEI in one HEVC packet.

    Parameters
    ----------
    data : bytes
        Packet payload: NAL units with ``length_size``-byte big-endian length prefixes, as MP4/MKV demuxers
        return them, or an Annex B byte stream (start codes), as MPEG-TS does.
    light : ContentLightLevel
        Values to write.
    length_size : int
        NAL length field size from the hvcC record (``lengthSizeMinusOne + 1``).

    Returns
    -------
    bytes
        The packet with SEI NAL units rebuilt and their length prefixes updated.
    """
    if _is_annexb(data):
        return _patch_annexb(data, light)
    out = bytearray()
    pos = 0
    while pos + length_size <= len(data):
        size = int.from_bytes(data[pos : pos + length_size], "big")
        nal = data[pos + length_size : pos + length_size + size]
        pos += length_size + size
        patched = patch_hevc_sei_nal(nal, light)
        out += len(patched).to_bytes(length_size, "big") + patched
    out += data[pos:]
    return bytes(out)


def _patch_annexb(data: bytes, light: ContentLightLevel) -> bytes:
    starts = []
    i = 0
    while (i := data.find(b"\x00\x00\x01", i)) >= 0:
        starts.append(i + 3)
        i += 3
    out = bytearray(data[: starts[0] - 3])
    for k, start in enumerate(starts):
        end = starts[k + 1] - 3 if k + 1 < len(starts) else len(data)
        nal = data[start:end]
        trailing_zero = len(nal) > 0 and k + 1 < len(starts) and nal.endswith(b"\x00")
        if trailing_zero:  # the leading zero of the next 4-byte start code
            nal = nal[:-1]
        out += b"\x00\x00\x01" + patch_hevc_sei_nal(nal, light) + (b"\x00" if trailing_zero else b"")
    return bytes(out)


def hvcc_length_size(extradata: bytes) -> int:
    """NAL length prefix size declared by an hvcC record (4 when the extradata is Annex B or missing)."""
    if len(extradata) >= 23 and extradata[0] == 1:
        return (extradata[21] & 3) + 1
    return 4


def patch_hvcc(extradata: bytes, light: ContentLightLevel) -> bytes:
    """Rewrite the content light level SEI that x265's global header puts into the hvcC arrays.

    Returns the record unchanged when it is not an hvcC (configurationVersion != 1, e.g. Annex B headers).
    """
    if len(extradata) < 23 or extradata[0] != 1:
        return _patch_annexb(extradata, light) if _is_annexb(extradata) else extradata
    out = bytearray(extradata[:23])
    pos = 23
    for _ in range(extradata[22]):
        out += extradata[pos : pos + 3]  # completeness + NAL type, numNalus
        count = int.from_bytes(extradata[pos + 1 : pos + 3], "big")
        pos += 3
        for _ in range(count):
            size = int.from_bytes(extradata[pos : pos + 2], "big")
            patched = patch_hevc_sei_nal(extradata[pos + 2 : pos + 2 + size], light)
            out += len(patched).to_bytes(2, "big") + patched
            pos += 2 + size
    out += extradata[pos:]
    return bytes(out)


# --- AV1 ------------------------------------------------------------------------------------------------


def _read_leb128(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise ValueError("leb128 value longer than 8 bytes")


def patch_av1_obus(data: bytes, light: ContentLightLevel) -> bytes:
    """Rewrite every METADATA_TYPE_HDR_CLL OBU in a sequence of sized OBUs (a packet or av1C configOBUs).

    ``max_cll`` and ``max_fall`` are fixed 16-bit fields, so OBU sizes never change.
    """
    out = bytearray(data)
    cll, fall = light.coded()
    pos = 0
    while pos < len(out):
        header = out[pos]
        obu_type = (header >> 3) & 0xF
        has_extension = bool(header & 0x04)
        has_size = bool(header & 0x02)
        payload = pos + 1 + has_extension
        if not has_size:  # only allowed for the last OBU; nothing after it to find
            size = len(out) - payload
        else:
            size, payload = _read_leb128(out, payload)
        if obu_type == AV1_OBU_METADATA:
            metadata_type, body = _read_leb128(out, payload)
            if metadata_type == AV1_METADATA_HDR_CLL and body + 4 <= payload + size:
                out[body : body + 4] = cll.to_bytes(2, "big") + fall.to_bytes(2, "big")
        pos = payload + size
    return bytes(out)


def patch_av1c(extradata: bytes, light: ContentLightLevel) -> bytes:
    """Patch configOBUs after the 4-byte av1C header (sequence header, rarely metadata)."""
    if len(extradata) > 4 and extradata[0] == 0x81:
        return extradata[:4] + patch_av1_obus(extradata[4:], light)
    return extradata
