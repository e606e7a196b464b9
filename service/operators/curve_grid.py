"""Slicing a grid of monotone tone curves at full resolution: how ``mqn`` turns its network output into light.

The network predicts, for each cell of a coarse grid over the frame, a tone curve: output PQ at fixed input
knots (PQ of the BT.2408 luminance; knot 0 is black and maps to 0). Every full-resolution pixel

1. places its SDR code values at 203 cd/m² white (the ``bt2408`` rendering) in BT.2020 and takes their
   luminance ``Y``;
2. reads the curve *at its own place* (bilinear between the four nearest cells, pixel centres aligned as in
   TensorFlow's half-pixel resize) and *at its own luminance* (linear between the two knots around PQ(Y));
3. scales its linear RGB by output / input luminance, so its chromaticity (hue and saturation) is the
   SDR's; the output never falls below ``floor`` times ``Y`` and, if a channel would pass the peak, all
   three are lowered together (hue kept);
4. with ``saturation`` (format 5), moves its colour towards or away from the white of the same luminance by
   a factor the grid also carries (:func:`saturation_factor`): hue and luminance stay, only the distance from
   white changes, and never so far that a BT.2020 channel would go negative.

Each pixel's light is thus a monotone function of its own luminance, and neighbouring pixels use nearly the
same curve: a thin bright line stays brighter than its surroundings instead of inheriting a gain averaged
with them. ``models.mqn.layers.CurveSlice`` is the differentiable twin the model was trained through;
:func:`slice_reference` is the NumPy statement of the same maths, which the kernel is tested against.
"""

from dataclasses import dataclass
from functools import cached_property

import numba
import numpy as np
import numpy.typing as npt

from service.colour.pq import eotf_inverse_st2084, eotf_st2084
from service.colour.scaling import SDR_WHITE_NITS
from service.colour.ycbcr import LUMA_BT2020

SAMPLES = 128
"""Samples per cell curve in the kernel's tables (evenly spaced in sqrt(Y / 203)). Measured on the trained
model's curves for real frames: within 1.1 10-bit PQ codes of the exact curve (p99.9 0.9; 256 samples give
0.7 / 0.4 but make the 720p kernel 20 % slower, the per-row tables being rebuilt for every row)."""
PEAK_CONTRAST = 0.25
"""Light above (``peak_ratio`` times) the neighbourhood's opening, as a fraction of SDR white, at which a
pixel reads the peak curve alone (models trained with a peak guide)."""
PEAK_RADIUS_DIVISOR = 180
"""Short side of the frame per pixel of the opening's radius (:func:`peak_radius`)."""
SATURATION_RANGE = (0.0, 0.7)
"""Bounds of the predicted log-saturation: a pixel's colour is never less saturated than the SDR's and at
most twice as far from white. Never less, because washed-out colour is what users hold against ITM, and a
model allowed to desaturate does: ``mqn_v12``, trained with (-0.7, 0.7), took real mid-tones to 0.79-0.97x
the SDR's saturation and the ferris frames' hue 1.4-1.8 degrees off (the SDR synthesis's per-channel curves
saturate mid-tones, so its scene-light targets are paler than the SDR)."""
DECODE_STEPS = 4096
"""Intervals of the PQ -> cd/m² table (linear interpolation: well under 0.1 of a 10-bit code)."""


@dataclass(frozen=True)
class CurveSpec:
    """The curve convention of an exported model (``mqn.json``) and the output limits of one operator."""

    knots_nits: tuple[float, ...]
    floor: float
    peak_nits: float
    paired: bool = False
    """Each cell has a base and a peak curve (knots 1..K of each, in that order), blended by
    :func:`peak_weight`."""
    peak_ratio: float = 1.0
    """How many times its neighbourhood's opening a pixel must exceed before it reads the peak curve
    (:func:`peak_weight`); the model was trained with this value."""
    saturation: bool = False
    """Each cell also carries two log-saturations, at black and at SDR white, after its curves
    (:func:`cell_saturation`, :func:`saturation_factor`)."""
    saturation_range: tuple[float, float] = SATURATION_RANGE
    """Where the log-saturations are clipped (the model was trained with these bounds)."""

    @property
    def curve_channels(self) -> int:
        """Grid channels holding curve knots (base, then peak)."""
        return (len(self.knots_nits) - 1) * (2 if self.paired else 1)

    @property
    def knots_per_cell(self) -> int:
        """Channels of the network's grid: the curves, then the saturation pair."""
        return self.curve_channels + (2 if self.saturation else 0)

    @cached_property
    def knot_codes(self) -> npt.NDArray[np.float32]:
        """PQ codes of the input knots."""
        return np.asarray(eotf_inverse_st2084(np.asarray(self.knots_nits, np.float64)), np.float32)

    @cached_property
    def peak_code(self) -> float:
        """PQ code of the peak: curves are clipped there before decoding."""
        return float(eotf_inverse_st2084(self.peak_nits))

    @cached_property
    def decode_table(self) -> npt.NDArray[np.float32]:
        """cd/m² at ``DECODE_STEPS`` + 1 PQ codes evenly spaced over [0, peak code]."""
        v = np.linspace(0.0, self.peak_code, DECODE_STEPS + 1, dtype=np.float64)
        return np.asarray(eotf_st2084(v), np.float32)

    @cached_property
    def sample_segments(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Segment index and position in it of each table sample's input luminance."""
        y = SDR_WHITE_NITS * np.linspace(0.0, 1.0, SAMPLES) ** 2
        u = np.asarray(eotf_inverse_st2084(y), np.float64)
        codes = self.knot_codes.astype(np.float64)
        seg = np.clip(np.searchsorted(codes, u, side="right") - 1, 0, len(codes) - 2)
        return seg, np.clip((u - codes[seg]) / (codes[seg + 1] - codes[seg]), 0.0, 1.0)


def peak_radius(height: int, width: int) -> int:
    """Half-width of the opening's square window: about 1/180 of the short side (2 px at 360p, 4 at 720p).

    Relative to the frame, so the same picture at another size finds the same structures small.
    """
    return max(1, round(min(height, width) / PEAK_RADIUS_DIVISOR))


def _valid_extreme(a: npt.NDArray[np.float64], radius: int, op: np.ufunc) -> npt.NDArray[np.float64]:
    """Min or max over every full (2r + 1)² window of N x H x W (output shrinks by 2r per axis)."""
    for axis in (1, 2):
        a = op.reduce(np.lib.stride_tricks.sliding_window_view(a, 2 * radius + 1, axis), axis=-1)
    return a


def peak_weight(y: npt.NDArray[np.floating], ratio: float = 1.0) -> npt.NDArray[np.float64]:
    """0..1 per pixel: how far it stands above ``ratio`` times the grey opening of its square neighbourhood.

    The opening (erosion, then dilation, over the same window) removes bright structures too small to hold
    the window: lamps, speculars, thin lit lines. Inside and at the edge of a large bright area it equals the
    pixel, so a lit wall, a window or the sky gets weight 0 and no bright rim. Past the border the frame is
    taken to repeat its edge pixels (as the backbone's padding does): a window clipped at the border would
    take a gradient rising into the border for a peak. ``y`` is N x H x W luminance in cd/m² of the BT.2408
    placement. NumPy, exact: the kernel's test oracle.

    ``ratio`` 1 selects every small bright structure, a thin lit line on a bright wall as much as a lamp at
    night. Measured on the training views, the targets of those two differ (median 1.3x against 4-5x the
    placement), so one peak curve per cell learned their mixture. ``ratio`` 2 asks a pixel to be more than
    twice as bright as its surroundings, as light sources in the dark are, and keeps the weight's targets
    consistent.
    """
    rel = np.clip(np.asarray(y, np.float64) / SDR_WHITE_NITS, 0.0, 1.0)
    r = peak_radius(*rel.shape[1:3])
    padded = np.pad(rel, ((0, 0), (2 * r, 2 * r), (2 * r, 2 * r)), mode="edge")
    opened = _valid_extreme(_valid_extreme(padded, r, np.minimum), r, np.maximum)
    return np.clip((rel - ratio * opened) / PEAK_CONTRAST, 0.0, 1.0)


def slice_reference(
    frames: npt.NDArray[np.uint8],
    lut_nits: npt.NDArray[np.float32],
    matrix: npt.NDArray[np.floating],
    knots: npt.NDArray[np.float32],
    spec: CurveSpec,
) -> npt.NDArray[np.float32]:
    """NumPy statement of the slicing (float64, exact PQ, unfused): the kernel's test oracle.

    Parameters
    ----------
    frames : numpy.ndarray
        N x H x W x 3 uint8 SDR code values.
    lut_nits : numpy.ndarray
        256 entries: code value -> cd/m² of the BT.2408 placement (input primaries).
    matrix : numpy.ndarray
        3 x 3 linear input primaries -> BT.2020.
    knots : numpy.ndarray
        N x h x w x K output PQ at input knots 1..K (``spec.paired``: base then peak curve, 2K).

    Returns
    -------
    numpy.ndarray
        N x H x W x 3 float32 linear BT.2020 cd/m².
    """
    rgb = lut_nits.astype(np.float64)[frames] @ np.asarray(matrix, np.float64).T
    y = rgb @ np.asarray(LUMA_BT2020)
    u = np.asarray(eotf_inverse_st2084(np.clip(y, 0.0, SDR_WHITE_NITS)), np.float64)
    k = len(spec.knots_nits) - 1
    v = _curve_reference(u, knots[..., :k], spec)
    if spec.paired:
        v = v + peak_weight(y, spec.peak_ratio) * (_curve_reference(u, knots[..., k : 2 * k], spec) - v)
    v = np.minimum(v, spec.peak_code)
    y_out = np.asarray(eotf_st2084(v), np.float64)
    y_safe = np.maximum(y, 1e-6)
    gain = np.maximum(y_out, spec.floor * y_safe) / y_safe
    out = np.clip(rgb * gain[..., None], 0.0, None)
    if spec.saturation:
        pair = _per_pixel(cell_saturation(knots, spec).astype(np.float64), *y.shape[1:])
        out = saturate(out, saturation_factor(y, pair))
    over = out.max(axis=-1, keepdims=True)
    return np.asarray(out * np.minimum(1.0, spec.peak_nits / np.maximum(over, 1e-6)), np.float32)


def cell_saturation(knots: npt.NDArray[np.float32], spec: CurveSpec) -> npt.NDArray[np.float32]:
    """Each cell's saturation factors at black and at SDR white (N x gh x gw x 2), from its log-saturations.

    Two values per cell because the SDR loses colour unevenly: camera and game curves bleach bright
    colours (each channel is compressed on its own), while the shadows keep theirs. Exponentiated per
    cell, then interpolated as factors, so the kernel spends no ``exp`` per pixel.
    """
    log_sat = knots[..., spec.curve_channels :].astype(np.float32)
    return np.exp(np.clip(log_sat, *spec.saturation_range)).astype(np.float32)


def saturation_factor(y: npt.NDArray[np.float64], pair: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each pixel's factor: its (interpolated) pair at black and at white, linear in sqrt(Y / 203)."""
    a = np.sqrt(np.clip(y / SDR_WHITE_NITS, 0.0, 1.0))
    return np.asarray(pair[..., 0] + (pair[..., 1] - pair[..., 0]) * a, np.float64)


def saturate(rgb: npt.NDArray[np.float64], factor: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Move linear BT.2020 ``rgb`` from the white of its own luminance by ``factor`` (hue and Y unchanged).

    The factor is capped where the smallest channel would reach zero: a colour already at the gamut's
    edge keeps its saturation instead of turning into another hue.
    """
    yo = rgb @ np.asarray(LUMA_BT2020)
    low = rgb.min(axis=-1)
    f = np.minimum(factor, yo / np.maximum(yo - low, 1e-6))
    return np.asarray(np.clip(yo[..., None] + f[..., None] * (rgb - yo[..., None]), 0.0, None), np.float64)


def _per_pixel(grid: npt.NDArray[np.float64], h: int, w: int) -> npt.NDArray[np.float64]:
    """N x gh x gw x C cell values at every pixel of an H x W frame, bilinear (half-pixel centres)."""
    gh, gw = grid.shape[1:3]
    gy = np.clip((np.arange(h) + 0.5) * gh / h - 0.5, 0.0, gh - 1.0)
    gx = np.clip((np.arange(w) + 0.5) * gw / w - 0.5, 0.0, gw - 1.0)
    y0 = np.floor(gy).astype(np.int64)
    x0 = np.floor(gx).astype(np.int64)
    y1 = np.minimum(y0 + 1, gh - 1)
    x1 = np.minimum(x0 + 1, gw - 1)
    fy = (gy - y0)[:, None, None]
    fx = (gx - x0)[None, :, None]
    top = grid[:, y0][:, :, x0] * (1 - fx) + grid[:, y0][:, :, x1] * fx
    bot = grid[:, y1][:, :, x0] * (1 - fx) + grid[:, y1][:, :, x1] * fx
    return np.asarray(top * (1 - fy) + bot * fy, np.float64)


def _curve_reference(
    u: npt.NDArray[np.float64], knots: npt.NDArray[np.float32], spec: CurveSpec
) -> npt.NDArray[np.float64]:
    """Output PQ of each pixel (input PQ ``u``, N x H x W) on one grid of curves, bilinear across cells."""
    n, h, w = u.shape
    gh, gw = knots.shape[1:3]
    full = np.concatenate([np.zeros((n, gh, gw, 1)), knots.astype(np.float64)], axis=-1)
    per_pixel = _per_pixel(full, h, w)  # N x H x W x (K + 1)
    codes = spec.knot_codes.astype(np.float64)
    seg = np.clip(np.searchsorted(codes, u, side="right") - 1, 0, len(codes) - 2)
    lo = np.take_along_axis(per_pixel, seg[..., None], -1)[..., 0]
    hi = np.take_along_axis(per_pixel, seg[..., None] + 1, -1)[..., 0]
    t = np.clip((u - codes[seg]) / (codes[seg + 1] - codes[seg]), 0.0, 1.0)
    return np.asarray(lo + (hi - lo) * t, np.float64)


@numba.njit(inline="always")
def _light_row(src, lut, matrix, dst):  # type: ignore[no-untyped-def]
    # One row of uint8 code values (flat W*3) -> linear BT.2020 cd/m² of the BT.2408 placement (flat W*3).
    for col in range(dst.shape[0] // 3):
        lr = lut[src[3 * col]]
        lg = lut[src[3 * col + 1]]
        lb = lut[src[3 * col + 2]]
        dst[3 * col] = matrix[0, 0] * lr + matrix[0, 1] * lg + matrix[0, 2] * lb
        dst[3 * col + 1] = matrix[1, 0] * lr + matrix[1, 1] * lg + matrix[1, 2] * lb
        dst[3 * col + 2] = matrix[2, 0] * lr + matrix[2, 1] * lg + matrix[2, 2] * lb


@numba.njit(inline="always", fastmath=True)
def _read_table(table, x0, x1, fx, p, last_sample, next_one):  # type: ignore[no-untyped-def]
    # A row's curve tables (cells side by side, ``SAMPLES`` each) at sample position p (0..SAMPLES - 1)
    # between the cells starting at x0 and x1 (weight fx on x1): bilinear in (cell, sample).
    sample = min(np.uint64(p), last_sample)
    t = p - np.float32(sample)
    a = x0 + sample
    b = x1 + sample
    lo = table[a] + (table[b] - table[a]) * fx
    hi = table[a + next_one] + (table[b + next_one] - table[a + next_one]) * fx
    return lo + (hi - lo) * t


@numba.njit(parallel=True, cache=True, fastmath=True, error_model="numpy")
def _slice_kernel(  # type: ignore[no-untyped-def]
    frames,
    lut,
    matrix,
    tables,
    peak_tables,
    weights,
    paired,
    sat_pairs,
    saturation,
    dec,
    peak_code,
    floor,
    peak,
    out,
):
    # frames N x H x W*3 uint8; tables N x gh x gw*J: each cell's curve (output PQ) at J luminances spaced
    # evenly in sqrt(Y / 203) (see curve_tables); with ``paired``, peak_tables the same for the peak curves
    # and weights N x H x W their per-pixel share (peak_weight), and out already holds each pixel's linear
    # BT.2020 light (the weight kernel computed it: one pass of table reads, not two); dec: cd/m² at PQ codes
    # evenly spaced over [0, peak_code]; out N x H x W*3 float32. Curves are interpolated across cells in PQ,
    # as in training. For each frame f with ``saturation[f]``, sat_pairs[f] (gh x gw*2) holds each cell's
    # saturation factors at black and at white (cell_saturation; saturation_factor and saturate state the
    # maths); a frame without runs no saturation pass.
    n, h, w3 = frames.shape
    w = w3 // 3
    gh = tables.shape[1]
    nj = SAMPLES
    gw = tables.shape[2] // nj
    wr = np.float32(LUMA_BT2020[0])
    wg = np.float32(LUMA_BT2020[1])
    wb = np.float32(LUMA_BT2020[2])
    top_j = np.float32(nj - 1)
    inv_white = np.float32(1.0 / SDR_WHITE_NITS)
    dec_scale = np.float32((dec.shape[0] - 1) / peak_code)
    pc = np.float32(peak_code)
    last_dec = np.uint64(dec.shape[0] - 2)
    last_sample = np.uint64(nj - 2)
    next_one = np.uint64(1)
    zero = np.float32(0.0)
    one = np.float32(1.0)
    tiny = np.float32(1e-6)
    # Unsigned, as every table index below: Numba wraps a negative signed index, and that check on each
    # gather cost the kernel ~20 % (an index known to be unsigned needs none).
    x0s = np.empty(w, np.uint64)
    x1s = np.empty(w, np.uint64)
    starts = np.zeros(gw + 1, np.int64)  # first column whose left cell is each cell (monotone in col)
    fxs = np.empty(w, np.float32)
    for col in range(w):
        x = min(max((col + 0.5) * gw / w - 0.5, 0.0), gw - 1.0)
        starts[int(x) + 1] = col + 1
        x0s[col] = np.uint64(int(x) * nj)
        x1s[col] = np.uint64(min(int(x) + 1, gw - 1) * nj)
        fxs[col] = x - int(x)
    for cell in range(1, gw + 1):  # a cell no column starts in (frames narrower than the grid) is empty
        starts[cell] = max(starts[cell], starts[cell - 1])
    for task in numba.prange(n * h):
        f = task // h
        row = task % h
        y = min(max((row + 0.5) * gh / h - 0.5, 0.0), gh - 1.0)
        y0 = int(y)
        y1 = min(y0 + 1, gh - 1)
        fy = np.float32(y - y0)
        # This row's tables, interpolated between two grid rows (contiguous: vectorises).
        upper = tables[f, y0]
        lower = tables[f, y1]
        rt = np.empty(gw * nj, np.float32)
        for j in range(gw * nj):
            rt[j] = upper[j] + (lower[j] - upper[j]) * fy
        pt = rt
        if paired:
            upper = peak_tables[f, y0]
            lower = peak_tables[f, y1]
            pt = np.empty(gw * nj, np.float32)
            for j in range(gw * nj):
                pt[j] = upper[j] + (lower[j] - upper[j]) * fy
        rs = np.empty(2 * gw, np.float32)
        saturating = saturation[f]
        if saturating:
            upper = sat_pairs[f, y0]
            lower = sat_pairs[f, y1]
            for j in range(2 * gw):
                rs[j] = upper[j] + (lower[j] - upper[j]) * fy
        src = frames[f, row]
        dst = out[f, row]
        # Passes over the row: the arithmetic ones vectorise; the gathers from the base curve, from the peak
        # curve (only the pixels with a peak weight, listed first: a branch per pixel mispredicted on
        # night frames) and from the decoding table each have a loop of their own.
        lum = np.empty(w, np.float32)
        level = np.empty(w, np.float32)  # sqrt(Y / 203), at most 1
        pos = np.empty(w, np.float32)
        if not paired:
            _light_row(src, lut, matrix, dst)
        for col in range(w):
            # Branch-free: black (lum 0) gets a finite gain that multiplies zeros.
            y_in = max(wr * dst[3 * col] + wg * dst[3 * col + 1] + wb * dst[3 * col + 2], tiny)
            lum[col] = y_in
            level[col] = min(np.sqrt(y_in * inv_white), one)
            pos[col] = level[col] * top_j
        for col in range(w):
            pos[col] = _read_table(rt, x0s[col], x1s[col], fxs[col], pos[col], last_sample, next_one)
        if paired:
            shares = weights[f, row]
            peaked = np.empty(w, np.uint64)
            count = 0
            for col in range(w):
                peaked[count] = col
                count += 1 if shares[col] > zero else 0
            for k in range(count):
                col = peaked[k]
                v = _read_table(pt, x0s[col], x1s[col], fxs[col], level[col] * top_j, last_sample, next_one)
                pos[col] += shares[col] * (v - pos[col])
        for col in range(w):
            q = min(pos[col], pc) * dec_scale
            i = min(np.uint64(q), last_dec)
            pos[col] = dec[i] + (dec[i + next_one] - dec[i]) * (q - np.float32(i))
        if saturating:
            # Each cell's factors across the columns between its centre and the next one's: contiguous
            # runs without gathers, so they vectorise; level turns from sqrt(Y / 203) into the factor.
            for cell in range(gw):
                nxt = 2 * min(cell + 1, gw - 1)
                b0 = rs[2 * cell]
                b1 = rs[nxt] - b0
                w0 = rs[2 * cell + 1]
                w1 = rs[nxt + 1] - w0
                for col in range(starts[cell], starts[cell + 1]):
                    at_black = b0 + b1 * fxs[col]
                    level[col] = at_black + (w0 + w1 * fxs[col] - at_black) * level[col]
        for col in range(w):
            y_in = lum[col]
            gain = max(pos[col], floor * y_in) / y_in
            r = max(dst[3 * col] * gain, zero)
            g = max(dst[3 * col + 1] * gain, zero)
            b = max(dst[3 * col + 2] * gain, zero)
            if saturating:
                y_out = wr * r + wg * g + wb * b
                cap = min(level[col], y_out / max(y_out - min(r, min(g, b)), tiny))
                r = max(y_out + cap * (r - y_out), zero)
                g = max(y_out + cap * (g - y_out), zero)
                b = max(y_out + cap * (b - y_out), zero)
            s = min(one, peak / max(r, max(g, max(b, tiny))))
            dst[3 * col] = r * s
            dst[3 * col + 1] = g * s
            dst[3 * col + 2] = b * s


@numba.njit(cache=True)
def _min_shifted(src, dst, shift, n):  # type: ignore[no-untyped-def]
    # dst[k] = min(src[k], src[k + shift]) for k < n. Slices rather than src[k + shift]: a computed index
    # gets Numba's negative-index check, which keeps LLVM from vectorising (8x slower); out of line because
    # inlined into _window_min's loop it did not vectorise either.
    head = src[:n]
    ahead = src[shift : shift + n]
    out = dst[:n]
    for k in range(n):
        out[k] = min(head[k], ahead[k])


@numba.njit(inline="always")
def _window_min(src, dst, span, scratch):  # type: ignore[no-untyped-def]
    # dst[c] = min(src[c : c + span]) for every full window (len(dst) = len(src) - span + 1). Log-doubling:
    # windows of 2, 4, 8, ... in the two scratch rows (each as long as src), then one overlapping step to
    # span straight into dst: 4 passes for a 9-wide window instead of 8.
    now = src
    width = 1
    step = 0
    while 2 * width < span:
        out = scratch[step % 2]
        _min_shifted(now, out, width, src.shape[0] - width)
        now = out
        width *= 2
        step += 1
    _min_shifted(now, dst, span - width, dst.shape[0])


@numba.njit(parallel=True, cache=True, fastmath=True, error_model="numpy")
def _peak_weight_kernel(frames, lut, matrix, radius, contrast, ratio, weights, light, cols, near, row_sums):  # type: ignore[no-untyped-def]
    # frames N x H x W*3 uint8 -> light N x H x W*3 float32, the BT.2408 placement in BT.2020 (what the slice
    # kernel scales), and weights N x H x W: peak_weight of its luminance. The relative luminance is quantised
    # to 16 bits (integer min / max vectorise, float ones did not: 6x faster; the weight moves by < 1e-4) and
    # padded by 2r repeated edge pixels; erosion and dilation then take full (2r + 1)-wide windows, rows
    # first, each pass shrinking the plane by 2r. Also row_sums N x H x gw x 2: per row, over each run of
    # columns cols[c]..cols[c + 1], the sum of the weights and the count of codes >= near (cell_stats's
    # inputs, while the row is at hand: a pass of its own over the light cost a quarter of this kernel).
    n, h, w3 = frames.shape
    w = w3 // 3
    pad = 2 * radius
    span = 2 * radius + 1
    hp = h + 2 * pad
    wp = w + 2 * pad
    padded = np.empty((n, hp, wp), np.uint16)
    rows_min = np.empty((n, hp, wp - pad), np.uint16)
    flipped_rows = np.empty((n, h + pad, w), np.uint16)  # 65535 minus the row maxima of the erosion
    scale = np.float32(65535.0 / SDR_WHITE_NITS)
    wr = np.float32(LUMA_BT2020[0])
    wg = np.float32(LUMA_BT2020[1])
    wb = np.float32(LUMA_BT2020[2])
    for task in numba.prange(n * hp):
        f = task // hp
        row = min(max(task % hp - pad, 0), h - 1)
        # The 2r rows past each border repeat the edge row: its light again, into scratch.
        rgb = light[f, row] if task % hp - pad == row else np.empty(w3, np.float32)
        _light_row(frames[f, row], lut, matrix, rgb)
        dst = padded[f, task % hp]
        codes = dst[pad : pad + w]
        for col in range(w):
            y = wr * rgb[3 * col] + wg * rgb[3 * col + 1] + wb * rgb[3 * col + 2]
            codes[col] = np.uint16(min(max(y * scale, np.float32(0.0)), np.float32(65535.0)) + 0.5)
        dst[:pad] = dst[pad]
        dst[pad + w :] = dst[pad + w - 1]
        _window_min(dst, rows_min[f, task % hp], span, np.empty((2, wp), np.uint16))
    for task in numba.prange(n * (h + pad)):
        f = task // (h + pad)
        row = task % (h + pad)
        dst = rows_min[f, row].copy()  # this row's erosion, dilated along the row at once
        for k in range(1, span):
            src = rows_min[f, row + k]
            for c in range(dst.shape[0]):
                dst[c] = min(dst[c], src[c])
        # A dilation is an erosion of the complement: one window routine serves both.
        for c in range(dst.shape[0]):
            dst[c] = 65535 - dst[c]
        _window_min(dst, flipped_rows[f, row], span, np.empty((2, dst.shape[0]), np.uint16))
    inv = np.float32(1.0 / (65535.0 * contrast))
    for task in numba.prange(n * h):
        f = task // h
        row = task % h
        flipped = flipped_rows[f, row].copy()  # 65535 minus this row's opening
        for k in range(1, span):
            src = flipped_rows[f, row + k]
            for c in range(w):
                flipped[c] = min(flipped[c], src[c])
        rel = padded[f, row + pad]
        dst = weights[f, row]
        for c in range(w):
            opened = np.float32(65535.0) - np.float32(flipped[c])
            above = np.float32(rel[pad + c]) - ratio * opened
            dst[c] = min(max(above * inv, np.float32(0.0)), np.float32(1.0))
        sums = row_sums[f, row]
        for cell in range(cols.shape[0] - 1):
            peaks = np.float32(0.0)
            bright = np.float32(0.0)
            for c in range(cols[cell], cols[cell + 1]):
                peaks += dst[c]
                bright += np.float32(1.0) if rel[pad + c] >= near else np.float32(0.0)
            sums[cell, 0] = peaks
            sums[cell, 1] = bright


TOE_NITS = 3.0
"""Up to this input (cd/m² of the placement) :func:`pinned_toe` holds every knot at the placement: below it a
pinned curve is the identity, so shadows stay exactly where the SDR put them."""


def pinned_toe(knots: npt.NDArray[np.float32], spec: CurveSpec) -> npt.NDArray[np.float32]:
    """``knots`` with every curve's knots up to ``TOE_NITS`` on the placement, none after them below it.

    The runtime twin of ``models.mqn.layers.CurveKnots``' ``toe_knots``, for a model trained without it:
    the shadows' lift is the model's guess at how hard the camera crushed them, which it cannot tell from
    the frame (model card, "Shadows are lifted"); pinned, a night scene keeps the SDR's black level.
    """
    k = len(spec.knots_nits) - 1
    pinned = sum(1 for nits in spec.knots_nits[1:] if nits <= TOE_NITS)
    toe = (spec.knot_codes[1 : pinned + 1] - spec.knot_codes[0]).astype(np.float32)
    out = np.array(knots, np.float32, copy=True)
    for start in range(0, spec.curve_channels, k):
        rest = out[..., start + pinned : start + k]
        out[..., start : start + pinned] = toe
        np.maximum(rest, toe[-1], out=rest)
    return out


def curve_tables(knots: npt.NDArray[np.float32], spec: CurveSpec) -> npt.NDArray[np.float32]:
    """Each cell's curve as output PQ at ``SAMPLES`` input luminances (evenly spaced in sqrt(Y / 203)).

    N x gh x gw x SAMPLES, not yet clipped at the peak (that happens per pixel, after interpolating across
    cells, as in training). The kernel interpolates them linearly in sqrt(Y): a monotone curve stays
    monotone, and the kinks at the knots are rounded off over one sample.
    """
    n, gh, gw, _ = knots.shape
    full = np.concatenate([np.zeros((n, gh, gw, 1)), knots.astype(np.float64)], axis=-1)
    seg, t = spec.sample_segments
    v = full[..., seg] * (1.0 - t) + full[..., seg + 1] * t
    return np.asarray(v, np.float32)


def with_coarse_peaks(
    knots: npt.NDArray[np.float32], coarse: npt.NDArray[np.float32], spec: CurveSpec
) -> npt.NDArray[np.float32]:
    """``knots`` with their peak curves replaced by those of a coarser grid of the same frames.

    Why: the peak curve says how bright the small bright things of a region are, and the network answers
    that from what the region looks like. In a fine view (quality mode's 512 px) the lamps of a night
    scene are resolved as bright blobs, and the network takes them for lit surfaces: the ferris lamps come
    out at 411-502 cd/m² there against 611-648 from fast mode's 128 px view, where they are below a pixel
    and the region looks as dark as it is. The coarse peak curves are resized to the fine grid (bilinear,
    half-pixel centres, as the slicing reads cells) and kept at or above the fine base curve, which the
    trained head guarantees for its own pairs. Base curves and saturation stay the fine grid's.
    """
    if not spec.paired:
        raise ValueError("only a paired curve spec has peak curves to replace")
    k = len(spec.knots_nits) - 1
    gh, gw = knots.shape[1:3]
    peaks = _per_pixel(coarse[..., k : 2 * k].astype(np.float64), gh, gw)
    out = knots.copy()
    out[..., k : 2 * k] = np.maximum(peaks, knots[..., :k])
    return out


NEAR_WHITE = 0.9
"""Luminance, as a share of SDR white, from which a pixel counts as near white (:class:`PeakLight`)."""


@dataclass(frozen=True)
class PeakLight:
    """Each pixel's light and peak weight, computed once per batch (:func:`peak_light`).

    ``light`` is N x H x W x 3 float32, the BT.2408 placement in linear BT.2020 cd/m² (the slicing scales it
    in place into the output); ``weights`` N x H x W float32, :func:`peak_weight` of its luminance;
    ``row_sums`` N x H x gw x 2 float32: per row and run of columns ``cols[c]`` to ``cols[c + 1]``, the
    sum of the weights and the count of pixels at or above ``NEAR_WHITE`` of SDR white.
    """

    light: npt.NDArray[np.float32]
    weights: npt.NDArray[np.float32]
    cols: npt.NDArray[np.int64]
    row_sums: npt.NDArray[np.float32]


def cell_starts(size: int, cells: int) -> npt.NDArray[np.int64]:
    """First pixel of each of ``cells`` cells along a side of ``size`` pixels, and ``size`` at the end.

    Pixel ``i`` belongs to cell ``floor(i * cells / size)``.
    """
    c = np.arange(cells + 1, dtype=np.int64)
    return np.asarray(-(-c * size // cells), np.int64)


def peak_light(
    frames: npt.NDArray[np.uint8],
    lut_nits: npt.NDArray[np.float32],
    matrix: npt.NDArray[np.floating],
    peak_ratio: float,
    cells_across: int = 0,
) -> PeakLight:
    """The first pass of a paired slicing, on its own.

    A model whose network also reads per-cell statistics of the peak weights
    (:mod:`service.operators.cell_stats`) needs them before its curves exist: ``cells_across`` is its
    grid's width, over which the row sums are taken (0, for every other model: no sums, no per-pixel work).
    """
    n, h, w, _ = frames.shape
    light = np.empty((n, h, w, 3), np.float32)
    weights = np.empty((n, h, w), np.float32)
    cols = cell_starts(w, cells_across) if cells_across else np.zeros(1, np.int64)
    row_sums = np.empty((n, h, cells_across, 2), np.float32)
    _peak_weight_kernel(
        np.ascontiguousarray(frames).reshape(n, h, w * 3),
        np.ascontiguousarray(lut_nits, np.float32),
        np.asarray(matrix, np.float32),
        peak_radius(h, w),
        np.float32(PEAK_CONTRAST),
        np.float32(peak_ratio),
        weights,
        light.reshape(n, h, w * 3),
        cols,
        np.uint16(round(NEAR_WHITE * 65535.0 + 0.5)),  # the kernel's codes round half up: 58982 is >= 0.9
        row_sums,
    )
    return PeakLight(light, weights, cols, row_sums)


def slice_curves(
    frames: npt.NDArray[np.uint8],
    lut_nits: npt.NDArray[np.float32],
    matrix: npt.NDArray[np.floating],
    knots: npt.NDArray[np.float32],
    spec: CurveSpec,
    lit: PeakLight | None = None,
) -> npt.NDArray[np.float32]:
    """Fused, parallel :func:`slice_reference` (same parameters; curves sampled, see :func:`curve_tables`).

    ``lit``, for a paired spec, is :func:`peak_light` of the same frames, already computed; its light
    buffer becomes the output.
    """
    n, h, w, _ = frames.shape
    gh, gw, nk = knots.shape[1:]
    if nk != spec.knots_per_cell:
        raise ValueError(
            f"the grid has {nk} knots per cell; the model's convention has {spec.knots_per_cell}"
        )
    k = len(spec.knots_nits) - 1
    flat = np.ascontiguousarray(frames).reshape(n, h, w * 3)
    lut = np.ascontiguousarray(lut_nits, np.float32)
    matrix32 = np.asarray(matrix, np.float32)
    tables = curve_tables(knots[..., :k], spec).reshape(n, gh, gw * SAMPLES)
    sat_pairs = np.ascontiguousarray(cell_saturation(knots, spec)).reshape(n, gh, -1)
    # A frame whose factors are all exactly 1 (a pair at its floor everywhere, as the shipped model's is)
    # skips that pass (1.6 ms per 720p frame on one thread). Decided per frame, so batch mates never change a
    # frame.
    saturation = np.any(sat_pairs != 1.0, axis=(1, 2))  # none without a pair: its array is empty
    if spec.paired:
        peak_tables = curve_tables(knots[..., k : 2 * k], spec).reshape(n, gh, gw * SAMPLES)
        if lit is None:
            lit = peak_light(frames, lut_nits, matrix, spec.peak_ratio)
        out, weights = lit.light, lit.weights
    else:
        out = np.empty((n, h, w, 3), np.float32)
        peak_tables, weights = tables, np.zeros((1, 1, 1), np.float32)
    _slice_kernel(
        flat,
        lut,
        matrix32,
        tables,
        peak_tables,
        weights,
        spec.paired,
        sat_pairs,
        saturation,
        spec.decode_table,
        np.float32(spec.peak_code),
        np.float32(spec.floor),
        np.float32(spec.peak_nits),
        out.reshape(n, h, w * 3),
    )
    return out
