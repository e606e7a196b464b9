"""Training data for MQN: real scene-linear HDR scenes -> (synthetic SDR, absolute HDR target) pairs.

Scenes come from ``<repo>/../shared/data/hdr`` (EXR, BT.709, MANIFEST.csv). Equirectangular panoramas are
cut into random rectilinear (perspective) views, photos into random crops and rescales. Each view is then
rendered to SDR the many ways real SDR content is made (exposure, camera response curves, game tone
mappers, clipping, saturation, sRGB/BT.1886, 8-bit, JPEG, noise) and to an HDR target in the absolute
convention of :mod:`models.mqn.convention`. Everything is a pure function of a ``numpy.random.Generator``,
so a seed reproduces a sample exactly. NumPy + Pillow + OpenEXR only (no TensorFlow here).
"""

import csv
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt
import OpenEXR
from PIL import Image

from models.mqn.convention import luminance, nits_to_pq, reference_nits
from service.colour.scaling import DEFAULT_PEAK_NITS, SDR_WHITE_NITS
from service.colour.sdr_transfer import eotf_bt1886, eotf_inverse_bt1886, eotf_inverse_srgb, eotf_srgb

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "hdr"
"""Scenes live next to the repository, never inside it."""

DEFAULT_VAL_SCENES = (
    "ScanLines_Tree.exr",
    "MultiView_Fog.exr",
    "LuminanceChroma_Garden.exr",
    "hdri_dancing_hall_1k.exr",
    "hdri_peppermint_powerplant_1k.exr",
    "hdri_drachenfels_cellar_1k.exr",
    "hdri_hilly_terrain_01_1k.exr",
    "hdri_chinese_garden_1k.exr",
)
"""Whole held-out scenes: 3 photos + 5 panoramas, indoor/outdoor/night mix, all of singleton families and
not (to our knowledge) re-distributed under another name elsewhere in the set."""

TRANSFERS = ("srgb", "bt1886")
CURVES = ("clip", "gamma_crf", "sigmoid_crf", "reinhard", "hable", "aces", "agx")
"""The tone curves a view draws uniformly."""
ALL_CURVES = (*CURVES, "video_knee")
"""Every curve :func:`tone_curve` knows; ``video_knee`` is drawn by ``SynthesisConfig.p_video_knee`` only."""
WHITE_OVER_KEY = 5.6
"""SDR white over a view's log-average luminance: auto-exposure puts the key at 0.18 of white (1 / 0.18,
rounded as the shipped run's emitters were drawn)."""


@dataclass(frozen=True)
class Scene:
    """One manifest row: file name, kind (photo / equirect panorama) and family (split unit)."""

    file: str
    kind: str
    family: str

    @property
    def is_panorama(self) -> bool:
        """Equirectangular scenes are cut into perspective views."""
        return "equirect" in self.kind

    @property
    def split_key(self) -> str:
        """Family if set, else the file itself: a family never straddles the split."""
        return self.family or self.file


@dataclass(frozen=True)
class SynthesisConfig:
    """Ranges of the SDR synthesis; every field is sampled uniformly unless said otherwise."""

    ev_sigma: float = 1.0
    ev_max: float = 3.0
    fov_deg: tuple[float, float] = (45.0, 100.0)
    pitch_deg: tuple[float, float] = (-30.0, 40.0)
    p_jpeg: float = 0.5
    jpeg_quality: tuple[int, int] = (35, 95)
    p_noise: float = 0.4
    noise_sigma: tuple[float, float] = (0.002, 0.02)
    p_saturation: float = 0.5
    saturation: tuple[float, float] = (0.7, 1.35)
    peak_nits: float = DEFAULT_PEAK_NITS
    p_luminance_curve: float = 0.0
    """Share of views whose tone curve is applied to luminance with RGB ratios kept (tinted clipped lamps)."""
    p_bright: float = 0.35
    """Share of panorama views aimed at one of the scene's brightest spots (lamps, sun, speculars, windows):
    uniformly aimed views of a night scene rarely contain its lamps, yet those are what ITM must expand."""
    p_deliver: float = 0.0
    """Share of views rendered at ``deliver_factor`` times the size, tone-mapped and quantised there, and
    downscaled as delivered video is (the SDR in its gamma domain, the reference in linear light)."""
    deliver_factor: int = 3
    p_video_knee: float = 0.0
    """Share of views shot by a video camera: the BT.709 OETF with a knee (``video_knee``) instead of a curve
    drawn from ``CURVES``. Broadcast and consumer video cameras compress the light above 80-95 % of white
    into the last codes, so an unclipped near-white pixel in their video stands for light several times
    above white: the night lamps ITM must expand (models/results/lamps_diagnosis.md)."""
    p_emitters: float = 0.0
    """Share of views given strings of small light sources in their dark parts (:func:`add_emitters`), always
    delivered from ``deliver_factor`` times the size. The panoramas hold too few lamps in dark surroundings
    for the network to learn that an unclipped near-white core at night is a light source."""
    emitter_white: tuple[float, float] = (10.0, 300.0)
    """Range (log-uniform) of an emitter's peak, in multiples of the view's SDR white
    (``WHITE_OVER_KEY`` times its key)."""
    emitter_strings: tuple[int, int] = (2, 6)
    """Range (uniform, inclusive) of the number of emitter strings in a view, sized for 384² views. Twice as
    many on 512² views (the same share of lamp pixels, ``mqn_v33``) made the lamps dimmer, not brighter."""
    emitter_sigma: tuple[float, float] = (0.4, 1.5)
    """Range (uniform) of an emitter's Gaussian sigma, in delivered pixels. Up to 1.5, every lamp is smaller
    than a pixel of the network's view (2-4x below the delivered size), so the network never saw a lamp it
    could resolve: the ferris-wheel lamps, 2-3 px wide at 720p, are resolved at quality mode's 512 px and
    read there as the resolved bright things of the training views (windows, lit walls)."""
    scene_weight_power: float = 0.0
    """Draw scenes with probability proportional to their :func:`light_source_stops` (at least 1) to this
    power instead of uniformly. Scenes whose brightest thousandth stands far above the rest (lamps in a dark
    hall, studio lights, the windows of a cellar) then come up more often: the night-lamp targets were
    decided by a few such scenes (model card, ``mqn_v38``). 0 keeps the uniform draw, and the draws of
    earlier runs."""


@dataclass
class Sample:
    """One training pair.

    ``sdr`` is H x W x 3 uint8 code values; ``linear`` the SDR decoded and placed at 203 cd/m² (the
    BT.2408 placement the curves are applied to); ``base`` its PQ code; ``target`` the PQ code of the
    absolute HDR reference; ``scene`` the view's scene-linear light (for evaluation); ``meta`` how the SDR
    was made.
    """

    sdr: U8
    linear: F32
    base: F32
    target: F32
    scene: F32
    meta: dict[str, float | str] = field(default_factory=dict)


def read_manifest(data_dir: Path) -> list[Scene]:
    """Parse MANIFEST.csv (file, kind, family columns), sorted by file name.

    Sorted because the row order is not part of the data: the seeded evaluation cases and training
    views are drawn scene by scene from one random stream, so a manifest re-sorted upstream (it was, on
    2026-12-04) would otherwise silently change every case of the model card's table.
    """
    with (data_dir / "MANIFEST.csv").open(newline="") as fh:
        rows = [Scene(r["file"], r["kind"], r.get("family", "") or "") for r in csv.DictReader(fh)]
    return sorted(rows, key=lambda scene: scene.file)


def split_scenes(
    scenes: list[Scene], val_files: tuple[str, ...] = DEFAULT_VAL_SCENES
) -> tuple[list[Scene], list[Scene]]:
    """Hold out whole scenes; a family goes wholly to validation if any member is listed there.

    Raises
    ------
    ValueError
        If a listed validation scene is not in the manifest.
    """
    names = {s.file for s in scenes}
    missing = set(val_files) - names
    if missing:
        raise ValueError(f"validation scenes {sorted(missing)} are not in the manifest")
    val_keys = {s.split_key for s in scenes if s.file in val_files}
    train = [s for s in scenes if s.split_key not in val_keys]
    val = [s for s in scenes if s.split_key in val_keys]
    return train, val


def load_exr(path: Path) -> F32:
    """Read an RGB EXR as H x W x 3 float32 scene-linear light (NaN/inf/negatives removed)."""
    with OpenEXR.File(str(path)) as f:
        ch = f.channels()
        if "RGB" in ch:
            rgb = np.asarray(ch["RGB"].pixels, np.float32)
        else:
            rgb = np.stack([np.asarray(ch[c].pixels, np.float32) for c in ("R", "G", "B")], axis=-1)
    return np.clip(np.nan_to_num(rgb, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 65504.0)


def _bilinear(img: F32, x: F32, y: F32, wrap_x: bool) -> F32:
    """Sample ``img`` at float pixel coordinates (pixel centres at integer + 0.5)."""
    h, w, _ = img.shape
    x = x - 0.5
    y = np.clip(y - 0.5, 0.0, h - 1.0)
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx = (x - x0)[..., None].astype(np.float32)
    fy = (y - y0)[..., None].astype(np.float32)
    y1 = np.minimum(y0 + 1, h - 1)
    if wrap_x:
        x0, x1 = x0 % w, (x0 + 1) % w
    else:
        x0 = np.clip(x0, 0, w - 1)
        x1 = np.minimum(x0 + 1, w - 1)
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bot = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)


def perspective_view(
    pano: F32, size: tuple[int, int], fov_deg: float, yaw_deg: float, pitch_deg: float, roll_deg: float = 0.0
) -> F32:
    """Rectilinear view of an equirectangular panorama (what a camera pointed that way would see).

    Parameters
    ----------
    pano : numpy.ndarray
        H x 2H x 3 equirectangular scene light.
    size : tuple of int
        Output (height, width).
    fov_deg : float
        Horizontal field of view.
    """
    h, w = size
    half = np.tan(np.radians(fov_deg) / 2.0)
    xs = (np.arange(w) + 0.5) / w * 2.0 - 1.0
    ys = ((np.arange(h) + 0.5) / h * 2.0 - 1.0) * (h / w)
    u, v = np.meshgrid(xs * half, ys * half)
    d = np.stack([u, -v, np.ones_like(u)], axis=-1)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    r, p, yw = np.radians([roll_deg, pitch_deg, yaw_deg])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(yw), 0, np.sin(yw)], [0, 1, 0], [-np.sin(yw), 0, np.cos(yw)]])
    d = d @ (ry @ rx @ rz).T
    lon = np.arctan2(d[..., 0], d[..., 2])
    lat = np.arcsin(np.clip(d[..., 1], -1.0, 1.0))
    ph, pw = pano.shape[:2]
    px = ((lon / (2 * np.pi) + 0.5) * pw).astype(np.float32)
    py = ((0.5 - lat / np.pi) * ph).astype(np.float32)
    return _bilinear(pano, px, py, wrap_x=True)


def photo_view(img: F32, size: tuple[int, int], rng: np.random.Generator) -> F32:
    """Random crop at a random scale (between native and the whole short side), resized to ``size``."""
    h, w = size
    ih, iw = img.shape[:2]
    max_scale = min(ih / h, iw / w)
    scale = float(np.exp(rng.uniform(0.0, np.log(max(max_scale, 1.0)))))
    ch, cw = min(ih, round(h * scale)), min(iw, round(w * scale))
    y0 = int(rng.integers(0, ih - ch + 1))
    x0 = int(rng.integers(0, iw - cw + 1))
    crop = img[y0 : y0 + ch, x0 : x0 + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if (ch, cw) == (h, w):
        return np.ascontiguousarray(crop, np.float32)
    ys = (np.arange(h) + 0.5) * ch / h
    xs = (np.arange(w) + 0.5) * cw / w
    gx, gy = np.meshgrid(xs.astype(np.float32), ys.astype(np.float32))
    return _bilinear(np.ascontiguousarray(crop, np.float32), gx, gy, wrap_x=False)


# --- tone curves: relative scene light x (1.0 = exposure's diffuse white) -> SDR display light [0, 1] ---


def _hable(x: F32) -> F32:
    a, b, c, d, e, f = 0.15, 0.50, 0.10, 0.20, 0.02, 0.30
    return ((x * (a * x + c * b) + d * e) / (x * (a * x + b) + d * f)) - e / f


def _agx(x: F32) -> F32:
    """AgX-like: log2 encoding over [-12.47, +4.03] EV around 0.18, Troy Sobotka's default sigmoid fit."""
    lo, hi = -12.47393, 4.026069
    t = np.clip((np.log2(np.maximum(x * 0.18 / 0.18, 1e-10)) - lo) / (hi - lo), 0.0, 1.0)
    t2 = t * t
    t4 = t2 * t2
    s = 15.5 * t4 * t2 - 40.14 * t4 * t + 31.96 * t4 - 6.868 * t2 * t + 0.4298 * t2 + 0.1191 * t - 0.00232
    return np.clip(s, 0.0, 1.0) ** 2.2


def _bt709_oetf(x: F32) -> F32:
    return np.where(x < 0.018, 4.5 * x, 1.099 * np.power(np.maximum(x, 0.018), 0.45) - 0.099)


def video_knee_code(x: F32, knee: float, white: float) -> F32:
    """A video camera's code value: the BT.709 OETF up to code ``knee``, then a straight line in light.

    The line reaches code 1.0 at ``white`` times the OETF's white (the knee point and knee slope of a
    broadcast camera), and clips above.
    """
    x_knee = ((knee + 0.099) / 1.099) ** (1.0 / 0.45)
    above = knee + (1.0 - knee) * (x - x_knee) / (white - x_knee)
    return np.clip(np.where(x < x_knee, _bt709_oetf(x), above), 0.0, 1.0)


def tone_curve(x: F32, curve: str, rng: np.random.Generator) -> tuple[F32, dict[str, float | str]]:
    """Render relative scene light to SDR display light with one randomly parametrised curve.

    Camera CRFs (``gamma_crf``, ``sigmoid_crf``) return *code-domain* values displayed by the transfer's
    EOTF; game tone mappers and ``clip`` return display light directly. Both end as display light here.
    """
    x = np.maximum(x, 0.0)
    meta: dict[str, float | str] = {"curve": curve}
    match curve:
        case "clip":
            d = np.minimum(x, 1.0)
        case "gamma_crf":
            g = float(rng.uniform(1.8, 2.6))
            meta["crf_gamma"] = g
            code = np.minimum(x, 1.0) ** (1.0 / g)
            d = code**2.2
        case "sigmoid_crf":
            n = float(rng.uniform(0.6, 1.2))
            k = float(rng.uniform(0.3, 1.0))
            meta["crf_n"], meta["crf_k"] = n, k
            code = (x**n / (x**n + k**n)) * (1.0 + k**n)
            d = np.minimum(code, 1.0) ** 2.2
        case "reinhard":
            white = float(np.exp(rng.uniform(np.log(1.5), np.log(16.0))))
            meta["white"] = white
            d = x * (1.0 + x / white**2) / (1.0 + x)
        case "hable":
            white = 11.2
            bias = float(rng.uniform(1.5, 3.0))
            meta["bias"] = bias
            d = _hable(x * bias) / _hable(np.float32(white))
        case "aces":
            y = x * float(rng.uniform(0.6, 1.0))
            d = (y * (2.51 * y + 0.03)) / (y * (2.43 * y + 0.59) + 0.14)
        case "agx":
            d = _agx(x)
        case "video_knee":
            knee = float(rng.uniform(0.80, 0.95))
            white = float(np.exp(rng.uniform(np.log(3.0), np.log(8.0))))
            meta["knee"], meta["white"] = knee, white
            d = video_knee_code(x, knee, white) ** 2.2
        case _:
            raise ValueError(f"curve '{curve}' is not known; expected one of {ALL_CURVES}")
    return np.clip(d, 0.0, 1.0).astype(np.float32), meta


def encode_sdr(display: F32, transfer: str) -> F32:
    """SDR display light -> non-linear code value in [0, 1] (inverse display EOTF)."""
    enc = eotf_inverse_srgb if transfer == "srgb" else eotf_inverse_bt1886
    return np.asarray(enc(display), np.float32)


def decode_sdr(code: npt.NDArray[np.floating], transfer: str) -> F32:
    """Non-linear code value in [0, 1] -> SDR display light (what a viewer sees, 1.0 = white)."""
    dec = eotf_srgb if transfer == "srgb" else eotf_bt1886
    return np.asarray(dec(code), np.float32)


def _jpeg(u8: U8, quality: int) -> U8:
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=quality, subsampling=2)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), np.uint8)


def deliver_downscale(sdr: U8, scene: F32, factor: int) -> tuple[U8, F32]:
    """The SDR and its scene light ``factor`` times smaller, each as the real chain does it.

    Video is mastered larger than it is delivered (a 4K camera, a 1080p or 720p stream): the scaler averages
    the *coded* SDR, so a small lamp that clipped at 255 becomes a core at 0.85-0.97 of white, while the
    light it stands for is the *linear* average, still far above white. Rendered at the delivered size
    directly, a lamp stays clipped, and the network never sees the near-white cores of real night video
    (measured on the ferris wheel: their p99.9 pixels sit at 0.90-0.975 of white).
    """
    h, w = sdr.shape[0] // factor, sdr.shape[1] // factor
    small = Image.fromarray(sdr).resize((w, h), Image.Resampling.BILINEAR)
    light = scene[: h * factor, : w * factor].reshape(h, factor, w, factor, 3).mean(axis=(1, 3))
    return np.asarray(small, np.uint8), light.astype(np.float32)


def add_emitters(scene: F32, rng: np.random.Generator, cfg: SynthesisConfig, factor: int) -> tuple[F32, int]:
    """``scene`` with strings of small Gaussian light sources added in its dark parts, and their count.

    Night video is full of lamps much smaller than a pixel of the delivered frame (LED strings, street
    lights, windows far away): each clips in the camera, and delivery averages it with its dark
    surroundings into an unclipped core (``deliver_downscale``). A view gets ``emitter_strings`` strings
    (2-6 unless set); a string is 4-30 sources along a line (spokes, strings, facades); each has a sigma of
    ``emitter_sigma`` delivered pixels (``factor`` render pixels per delivered one), warm white or a
    saturated LED colour, and kept only where the view's 8-pixel mean is below its log-average luminance,
    so lamps are taught in dark context and bright skies are untouched.
    The light is added to the scene, so SDR and target agree on where it is and how bright.
    """
    y = luminance(scene)
    h, w = y.shape
    key = float(np.exp(np.mean(np.log(np.maximum(y, 1e-6)))))
    cell = 8 * factor
    gh, gw = h // cell, w // cell
    local = y[: gh * cell, : gw * cell].reshape(gh, cell, gw, cell).mean(axis=(1, 3))
    dark = np.argwhere(local < key)
    if not len(dark):
        return scene, 0
    out = scene.copy()
    count = 0
    for _ in range(int(rng.integers(cfg.emitter_strings[0], cfg.emitter_strings[1] + 1))):
        cy, cx = (dark[int(rng.integers(len(dark)))] + rng.random(2)) * cell
        angle = float(rng.uniform(0.0, np.pi))
        length = float(rng.uniform(10.0, 120.0)) * factor
        n = int(rng.integers(4, 31))
        if rng.random() < 0.7:
            colour = np.array([1.0, rng.uniform(0.6, 1.0), rng.uniform(0.3, 0.9)], np.float32)
        else:
            colour = np.full(3, 0.15, np.float32)
            colour[int(rng.integers(3))] = 1.0
        colour /= float(luminance(colour))
        peak = key * WHITE_OVER_KEY * float(np.exp(rng.uniform(*np.log(cfg.emitter_white))))
        sigma = float(rng.uniform(*cfg.emitter_sigma)) * factor
        r = int(np.ceil(3.0 * sigma))
        offsets = np.arange(-r, r + 1, dtype=np.float32)
        for t in np.linspace(-0.5, 0.5, n) * length:
            py, px = cy + t * np.sin(angle), cx + t * np.cos(angle)
            iy, ix = round(py), round(px)
            inside = r <= iy < h - r and r <= ix < w - r and iy // cell < gh and ix // cell < gw
            if not inside or local[iy // cell, ix // cell] >= key:
                continue
            gy = np.exp(-0.5 * ((offsets + iy - py) / sigma) ** 2)
            gx = np.exp(-0.5 * ((offsets + ix - px) / sigma) ** 2)
            spot = peak * gy[:, None, None] * gx[None, :, None] * colour
            out[iy - r : iy + r + 1, ix - r : ix + r + 1] += spot
            count += 1
    return out, count


def synthesize(scene: F32, rng: np.random.Generator, cfg: SynthesisConfig, deliver_factor: int = 1) -> Sample:
    """Render one scene-linear view to a (SDR, base, target) training pair.

    Exposure is auto-exposure (log-average luminance to 0.18) plus a clipped Gaussian EV offset, so most
    samples look like competent SDR and a few are badly exposed, as real content is. With
    ``deliver_factor`` > 1 the view is that many times larger than the pair and is brought down by
    :func:`deliver_downscale` after the 8-bit quantisation and before the codec (JPEG), as delivery does.
    """
    y = luminance(scene)
    key = float(np.exp(np.mean(np.log(np.maximum(y, 1e-6)))))
    ev = float(np.clip(rng.normal(0.0, cfg.ev_sigma), -cfg.ev_max, cfg.ev_max))
    exposure = 0.18 / max(key, 1e-6) * 2.0**ev
    x = scene * np.float32(exposure)
    # Draw only when the knee is on, so p_video_knee = 0 reproduces the views of earlier runs.
    if cfg.p_video_knee > 0 and rng.random() < cfg.p_video_knee:
        curve = "video_knee"
    else:
        curve = CURVES[int(rng.integers(len(CURVES)))]
    if cfg.p_luminance_curve > 0 and rng.random() < cfg.p_luminance_curve:
        # Tone-map luminance and keep each pixel's RGB ratios (many game and camera pipelines do): a bright
        # coloured lamp then clips in one or two channels and stays tinted, as real SDR lamps are.
        y = np.maximum(luminance(x), 1e-9)[..., None]
        y_display, meta = tone_curve(y, curve, rng)
        display = np.clip(x * (y_display / y), 0.0, 1.0).astype(np.float32)
        meta["luminance_curve"] = 1.0
    else:
        display, meta = tone_curve(x, curve, rng)
    meta["ev"] = ev
    if rng.random() < cfg.p_saturation:
        s = float(rng.uniform(*cfg.saturation))
        lum = luminance(display)[..., None]
        display = np.clip(lum + s * (display - lum), 0.0, 1.0)
        meta["saturation"] = s
    if rng.random() < cfg.p_noise:
        sigma = float(rng.uniform(*cfg.noise_sigma))
        # Shot + read noise in linear light, before the 8-bit encode, as a sensor adds it.
        noise = rng.standard_normal(display.shape).astype(np.float32)
        display = np.clip(display + noise * sigma * np.sqrt(display + 0.01), 0.0, 1.0)
        meta["noise"] = sigma
    transfer = TRANSFERS[int(rng.integers(len(TRANSFERS)))]
    meta["transfer"] = transfer
    code = encode_sdr(display, transfer)
    sdr = np.clip(np.round(code * 255.0), 0, 255).astype(np.uint8)
    if deliver_factor > 1:
        sdr, scene = deliver_downscale(sdr, scene, deliver_factor)
        meta["deliver"] = float(deliver_factor)
    if rng.random() < cfg.p_jpeg:
        q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        sdr = _jpeg(sdr, q)
        meta["jpeg"] = q
    sdr_display = decode_sdr(sdr.astype(np.float32) / 255.0, transfer)
    ref = reference_nits(scene, sdr_display, cfg.peak_nits)
    return Sample(
        sdr=sdr,
        linear=(sdr_display * SDR_WHITE_NITS).astype(np.float32),
        base=nits_to_pq(sdr_display * SDR_WHITE_NITS),
        target=nits_to_pq(ref),
        scene=scene,
        meta=meta,
    )


def bright_directions(pano: npt.NDArray[np.floating], share: float = 0.002) -> npt.NDArray[np.float64]:
    """(yaw, pitch) in degrees of a panorama's brightest pixels (the top ``share``, at most 2000 of them).

    Rows are weighted by their solid angle (cos latitude), so the stretched poles do not dominate.
    """
    y = luminance(pano.astype(np.float32))
    h, w = y.shape
    lat = (0.5 - (np.arange(h) + 0.5) / h) * 180.0
    weighted = y * np.cos(np.radians(lat))[:, None]
    thresh = np.quantile(weighted, 1.0 - share)
    rows, cols = np.nonzero(weighted >= thresh)
    if len(rows) > 2000:
        keep = np.linspace(0, len(rows) - 1, 2000).astype(np.int64)
        rows, cols = rows[keep], cols[keep]
    yaw = ((cols + 0.5) / w - 0.5) * 360.0
    return np.stack([yaw, lat[rows]], axis=-1)


def light_source_stops(img: npt.NDArray[np.floating], panorama: bool) -> float:
    """Stops from a scene's 90th to its 99.9th luminance percentile (by solid angle for panoramas).

    Scale-free, as the scenes' absolute scales are arbitrary: large where a small share of the scene is far
    brighter than nearly all of it (lamps, studio lights, windows in a dark room), small for daylight
    scenes, whose sky fills the top decile.
    """
    y = luminance(img.astype(np.float32)).ravel()
    if panorama:
        h, w = img.shape[:2]
        lat = (0.5 - (np.arange(h) + 0.5) / h) * np.pi
        area = np.repeat(np.cos(lat), w)
    else:
        area = np.ones_like(y)
    order = np.argsort(y, kind="stable")
    share = np.cumsum(area[order])
    share /= share[-1]
    p90, p999 = (float(y[order][np.searchsorted(share, q)]) for q in (0.9, 0.999))
    return float(np.log2(max(p999, 1e-12) / max(p90, 1e-12)))


class SceneBank:
    """All scenes of one split, decoded once and kept in memory (float16 halves the footprint)."""

    def __init__(self, data_dir: Path, scenes: list[Scene]) -> None:
        self.scenes = scenes
        self.images = [load_exr(data_dir / s.file).astype(np.float16) for s in scenes]
        self.bright = [
            bright_directions(img) if s.is_panorama else None
            for s, img in zip(scenes, self.images, strict=True)
        ]

    @cached_property
    def light_stops(self) -> npt.NDArray[np.float64]:
        """Each scene's :func:`light_source_stops`, computed when a weighted draw first needs them."""
        return np.array(
            [light_source_stops(img, s.is_panorama) for s, img in zip(self.scenes, self.images, strict=True)]
        )

    def scene_shares(self, power: float) -> npt.NDArray[np.float64]:
        """Probability of drawing each scene (``SynthesisConfig.scene_weight_power``)."""
        weights = np.maximum(self.light_stops, 1.0) ** power
        return np.asarray(weights / weights.sum(), np.float64)

    def view(self, index: int, size: tuple[int, int], rng: np.random.Generator, cfg: SynthesisConfig) -> F32:
        """A random perspective view (panoramas) or crop (photos) of scene ``index``."""
        img = self.images[index].astype(np.float32)
        bright = self.bright[index]
        if bright is not None:
            fov = float(rng.uniform(*cfg.fov_deg))
            yaw = float(rng.uniform(-180.0, 180.0))
            pitch = float(rng.uniform(*cfg.pitch_deg))
            # Draw only when aiming is on, so p_bright = 0 reproduces the uniform views of earlier runs.
            if cfg.p_bright > 0 and len(bright) and rng.random() < cfg.p_bright:
                # Aim near a bright spot, off-centre by up to a third of the field of view.
                spot_yaw, spot_pitch = bright[int(rng.integers(len(bright)))]
                yaw = spot_yaw + float(rng.uniform(-fov / 3, fov / 3))
                pitch = float(np.clip(spot_pitch + rng.uniform(-fov / 4, fov / 4), -80.0, 80.0))
            return perspective_view(img, size, fov, yaw, pitch, roll_deg=float(rng.normal(0.0, 3.0)))
        return photo_view(img, size, rng)

    def sample(
        self, rng: np.random.Generator, size: tuple[int, int], cfg: SynthesisConfig, index: int | None = None
    ) -> Sample:
        """One synthesised pair from a drawn (``cfg.scene_weight_power``) or the given scene."""
        if index is not None:
            i = index
        elif cfg.scene_weight_power:
            i = int(rng.choice(len(self.images), p=self.scene_shares(cfg.scene_weight_power)))
        else:
            i = int(rng.integers(len(self.images)))
        # Draw only when delivery or emitters are on, so both at 0 reproduce the views of earlier runs.
        emitters = cfg.p_emitters > 0 and rng.random() < cfg.p_emitters
        delivered = emitters or (cfg.p_deliver > 0 and rng.random() < cfg.p_deliver)
        factor = cfg.deliver_factor if delivered else 1
        view = self.view(i, (size[0] * factor, size[1] * factor), rng, cfg)
        lamps = 0
        if emitters:
            view, lamps = add_emitters(view, rng, cfg, factor)
        out = synthesize(view, rng, cfg, factor)
        if emitters:
            out.meta["emitters"] = float(lamps)
        out.meta["scene"] = self.scenes[i].file
        return out


def downscale(sdr: U8, size: tuple[int, int]) -> U8:
    """Pillow BILINEAR to (height, width): what the runtime feeds the network.

    Bit-identical to the operator's own resize (``service.operators.mqn.resize_bilinear``).
    """
    small = Image.fromarray(sdr).resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(small, np.uint8)


WIDE_ASPECT = 16 / 9
"""Aspect of the wide training views (``batches``' ``wide_share``): what video is."""


def batches(
    bank: SceneBank,
    batch_size: int,
    size: tuple[int, int],
    net_sizes: tuple[int, ...],
    cfg: SynthesisConfig,
    seed: int,
    wide_share: float = 0.0,
) -> Iterator[tuple[F32, F32, F32]]:
    """Endless (network input in [0, 1], linear cd/m², target PQ) batches, NHWC float32, deterministic.

    Views are ``size`` (the full resolution the curves are sliced and judged at); the network sees them
    downscaled to a square side drawn per batch from ``net_sizes``, as the runtime downscales frames.

    A ``wide_share`` of the batches are 16:9 views as wide as ``size`` instead, which the network sees as
    the runtime sees a video frame (:func:`service.operators.mqn.processing_size`: the drawn side as the
    long side, both sides multiples of 32, so 640×360 and its crops go to 128×64, squeezed to 2:1). Square
    views alone never show the network the 8×4-cell, squeezed grid that fast mode runs every video at.
    """
    from service.operators.mqn import processing_size

    rng = np.random.default_rng(seed)
    while True:
        net = int(net_sizes[int(rng.integers(len(net_sizes)))])
        # Draw only when wide views are on, so wide_share = 0 reproduces the batches of earlier runs.
        wide = wide_share > 0 and rng.random() < wide_share
        view = (round(size[1] / WIDE_ASPECT / 8) * 8, size[1]) if wide else size
        small = processing_size(*view, net) if wide else (net, net)
        items = [bank.sample(rng, view, cfg) for _ in range(batch_size)]
        yield (
            np.stack([downscale(s.sdr, small) for s in items]).astype(np.float32) / 255.0,
            np.stack([s.linear for s in items]),
            np.stack([s.target for s in items]),
        )


def fixed_samples(
    bank: SceneBank, per_scene: int, size: tuple[int, int], cfg: SynthesisConfig, seed: int
) -> list[Sample]:
    """A fixed, seeded set of views per scene: the validation / calibration set."""
    rng = np.random.default_rng(seed)
    return [bank.sample(rng, size, cfg, index=i) for i in range(len(bank.images)) for _ in range(per_scene)]
