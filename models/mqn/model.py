"""MQN architecture: int8 MobileNetV2-0.35 U-Net backbone at low resolution + a float head of tone curves.

The split into two Keras models is the point of the design (Borrego-Carazo et al., BMVC 2021): the
backbone tolerates full int8 quantization, the small head that produces the final HDR values runs with float
activations (dynamic-range quantization). What the head predicts is ours: not pixels and not a per-channel
gain map, but a **grid of monotone tone curves** (one per 16 x 16-pixel cell of the low-resolution input,
piecewise linear in PQ over fixed luminance knots). Each full-resolution pixel then reads the curve at its
own place and its *own* luminance (:class:`models.mqn.layers.CurveSlice` in training, a Numba kernel at run
time), so a thin bright line in a dark area uses the bright end of the local curve instead of a gain
averaged with its dark surroundings: no dark or coloured outlines, no halos, no hue shifts.

backbone: SDR code values (N x h x w x 3 in [0, 1], h and w multiples of 32) -> features at 1/16
head:     features [, SDR [, cell statistics]] -> knots, N x h/16 x w/16 x K
          (output PQ at the K input knots after black)
"""

import math
from dataclasses import asdict, dataclass
from typing import Any

import keras
import numpy as np

from models.mqn.layers import (
    CellStats,
    ChannelAttention,
    CurveKnots,
    CurveSlice,
    EdgePad,
    GlobalStats,
    ResizeLike,
    toe_shape_segments,
)
from service.operators import cell_stats
from service.operators.curve_grid import SATURATION_RANGE

IRLB_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
"""MobileNetV2 table 2: (expansion t, channels c, repeats n, first stride s)."""

KNOTS_NITS = (0.0, 1.0, 3.0, 8.0, 16.0, 30.0, 50.0, 75.0, 100.0, 130.0, 160.0, 185.0, 203.0)
"""Input knots of every tone curve, in cd/m² of the BT.2408 placement (SDR white = 203). Dense near white,
where SDR content has compressed its highlights and the expansion happens."""

SOFT_SATURATION_START = 0.02
"""Where a sigmoid-bounded log-saturation starts, as a share of its range, when 0 is at an end of the range
(a sigmoid never reaches its ends, and the gradient there is this share: small, but not zero)."""


@dataclass(frozen=True)
class MQNConfig:
    """Architecture hyper-parameters (stored next to checkpoints and artefacts)."""

    width: float = 0.35
    decoder_channels: tuple[int, ...] = (64,)
    """Decoder output channels at 1/16 (and 1/8 ... if more are given); the grid is at the last level."""
    head_channels: int = 32
    attention: str = "ca"
    """"ca" channel attention in each decoder level, or "none"."""
    knots_nits: tuple[float, ...] = KNOTS_NITS
    max_log_slope: float = 3.5
    toe_knots: int = 0
    """Curve knots (from the first, 1 cd/m²) pinned to the BT.2408 placement: shadows kept where the SDR put
    them (:class:`models.mqn.layers.CurveKnots`; tried as ``mqn_v29``/``v30``, not shipped)."""
    toe_shape_nits: float = 0.0
    """Curve segments up to this input light (cd/m² of the placement) get their shares of the toe's rise
    from a zero-initialised head layer of their own (``head_toe_shape``), apart from the frame's level
    (:class:`models.mqn.layers.CurveKnots`); 0: off. A warm start begins exactly where it was. Tried as
    ``mqn_v47``: the darkest codes bent up and the held-out averages fell (model card)."""
    floor: float = 0.6
    """Output luminance never falls below this fraction of the BT.2408 placement's (ITM expands)."""
    peak_nits: float = 1000.0
    global_path: bool = False
    """Add a per-frame global path to the head (pooled features + SDR histograms -> an offset of the head's
    features, as HDRNet fuses its global path): the head then also takes the low-resolution SDR."""
    histogram_bins: int = 16
    global_tails: bool = False
    """The global path also reads the shares of pixels in the dark and clipped tails
    (:class:`models.mqn.layers.GlobalStats`); a warm start from a model without them starts where it was."""
    global_channels: int = 64
    global_aux: bool = False
    """Training only: the global path also predicts two numbers of the frame that the SDR's tone curve
    decides, how far its shadows and its clipped areas lie from the BT.2408 placement (in stops; targets
    from each training pair, :func:`models.mqn.losses.global_aux_targets`). Which curve made an SDR frame
    sets both (knowing it would nearly halve the toe's error), and the pixel loss alone left the model
    predicting the curves' average. The served head does not carry the extra layer. Tried as ``mqn_v32``:
    the auxiliary error fell, the held-out averages did not move; the frame's statistics barely tell the
    curves apart (model card, "The hidden variable is the tone curve")."""
    peak_guide: bool = False
    """Give every cell a second, brighter curve for small bright structures (:func:`peak_weight`): a pixel
    reads a blend of the two by how much it stands above the opening of its neighbourhood, so a lamp and a
    lit wall of the same SDR level in the same cell can get different light."""
    peak_init: float = -6.0
    """Initial bias of the peak curve's extra log-slopes (its kernel starts at zero). At -6 the peak curve
    starts on the base curve and, measured, stays there: Adam moves a parameter by about the learning rate
    per step, so a log-slope that must climb ~5 units from -6 barely leaves it in a few thousand steps
    (``mqn_v6``'s peak curve ended 1.2 % above its base). At -2 each segment starts 14 % above the
    identity's rise, and the loss pulls each one up or down from there."""
    peak_ratio: float = 1.0
    """A pixel reads the peak curve when it is more than this many times as bright as the opening of its
    neighbourhood (:func:`service.operators.curve_grid.peak_weight`); 1 (``mqn_v6``) takes every small
    bright structure, 2 only those that stand out as light sources do."""
    saturation: bool = False
    """Each cell also predicts a log-saturation at black and at SDR white (zero-initialised: the SDR's own
    colour). With the hue rule alone the colour is the SDR's, but SDR curves bleach bright colours channel
    by channel; measured on v6's held-out outputs, a per-image factor in six luminance bands would buy
    +0.36 dB PU21 and -0.71 ΔE_ITP."""
    saturation_range: tuple[float, float] = SATURATION_RANGE
    """Bounds of the log-saturation (``curve_grid.SATURATION_RANGE``: never below the SDR's colour);
    ``mqn_v12`` was trained with (-0.7, 0.7)."""
    saturation_soft: bool = False
    """Bound the log-saturation inside the head with a sigmoid instead of leaving it to the slicing's clip.
    The clip passes no gradient below its floor: ``mqn_v14``'s pair went just below 0 in every cell of
    every frame early on (the synthesis's targets are paler than the SDR in the mid-tones) and never came
    back, so it learned nothing for the bleached highlights it is for. A sigmoid keeps a gradient at the
    floor; it starts 2 % of the range above it when the range starts at 0 (a factor of 1.01 at 0.7)."""
    cell_stats: bool = False
    """The head also reads, per cell, statistics of the *full-resolution* frame
    (:mod:`service.operators.cell_stats`: how much of the cell is small bright structure, how much is near
    white), through a zero-initialised 1x1 conv added to its hidden features (a warm start begins exactly
    where the model without them was). The downscaled view cannot tell a string of LEDs from a lit surface,
    and what it shows of them changes with the view size: the lamps of every model up to ``mqn_v14`` did.
    Needs ``peak_guide`` and ``global_path``. ``mqn_v16`` was trained with them and left them unused."""
    fine_skips: bool = False
    """The grid's features also read the encoder's finer levels (1/2, 1/4, 1/8), average-pooled to the grid
    and added through a zero-initialised 1x1 conv (a warm start begins exactly where the model without
    them was). Without it the decoder sees the frame at 1/16 and coarser only, while ``mqn_v1``, whose
    decoder climbed back to 1/2, told a toe curve from a straight one even at a 128 px view (model card,
    "Where v1's lead at 640×360 is"). Tried as ``mqn_v42``: the toe did not change."""

    @property
    def grid_stride(self) -> int:
        """Input pixels per grid cell."""
        return 32 // 2 ** len(self.decoder_channels)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        d = asdict(self)
        d["decoder_channels"] = list(self.decoder_channels)
        d["knots_nits"] = list(self.knots_nits)
        d["saturation_range"] = list(self.saturation_range)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "MQNConfig":
        """Inverse of :meth:`to_json`."""
        d = dict(d)
        for key in ("decoder_channels", "knots_nits", "saturation_range"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


def _divisible(v: float, divisor: int = 8) -> int:
    """MobileNet channel rounding (never below 90% of ``v``)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _bn_act(x: Any, act: str | None, name: str) -> Any:
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    if act == "relu6":
        x = keras.layers.ReLU(6.0, name=f"{name}_relu6")(x)
    elif act == "relu":
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def _conv_bn(x: Any, filters: int, kernel: int, stride: int, act: str | None, name: str) -> Any:
    if kernel == 3:
        x = EdgePad(name=f"{name}_pad")(x)
    x = keras.layers.Conv2D(filters, kernel, stride, padding="valid", use_bias=False, name=f"{name}_conv")(x)
    return _bn_act(x, act, name)


def irlb(x: Any, filters: int, expansion: int, stride: int, name: str) -> Any:
    """Inverted residual linear bottleneck (MobileNetV2): 1x1 expand, 3x3 depthwise, 1x1 linear project."""
    c_in = int(x.shape[-1])
    h = x
    if expansion != 1:
        h = _conv_bn(h, c_in * expansion, 1, 1, "relu6", f"{name}_expand")
    h = EdgePad(name=f"{name}_pad")(h)
    h = keras.layers.DepthwiseConv2D(3, stride, padding="valid", use_bias=False, name=f"{name}_dw")(h)
    h = _bn_act(h, "relu6", f"{name}_dw")
    h = _conv_bn(h, filters, 1, 1, None, f"{name}_project")
    if stride == 1 and c_in == filters:
        h = keras.layers.Add(name=f"{name}_add")([x, h])
    return h


def build_backbone(cfg: MQNConfig) -> keras.Model:
    """MobileNetV2 encoder (1/2 .. 1/32) + U-Net decoder with channel attention back to the grid level."""
    sdr = keras.Input((None, None, 3), name="sdr")
    x = _conv_bn(sdr, _divisible(32 * cfg.width), 3, 2, "relu6", "stem")
    skips = []
    block = 0
    for t, c, n, s in IRLB_SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            if stride == 2:
                skips.append(x)  # resolution about to halve: keep the last tensor of this scale
            x = irlb(x, _divisible(c * cfg.width), t, stride, f"enc{block}")
            block += 1
    # skips: 1/2, 1/4, 1/8, 1/16; x is 1/32. The decoder climbs as many levels as it has channel counts.
    for level, (skip, ch) in enumerate(zip(reversed(skips), cfg.decoder_channels, strict=False)):
        name = f"dec{level}"
        x = ResizeLike(name=f"{name}_up")(x, skip)
        x = keras.layers.Concatenate(name=f"{name}_cat")([x, skip])
        x = irlb(x, ch, 6, 1, f"{name}_b0")
        if cfg.attention == "ca":
            x = ChannelAttention(0.5, name=f"{name}_ca")(x)
        x = irlb(x, ch, 6, 1, f"{name}_b1")
    if cfg.fine_skips:
        x = _add_fine_skips(x, skips, cfg)
    return keras.Model(sdr, x, name="mqn_backbone")


def _add_fine_skips(x: Any, skips: list[Any], cfg: MQNConfig) -> Any:
    """``x`` (at the grid level) plus a zero-initialised projection of the finer skips pooled to the grid."""
    finer = skips[: max(0, len(skips) - len(cfg.decoder_channels))]  # 1/2, 1/4 ... above the grid's level
    if not finer:
        raise ValueError("fine_skips needs a grid coarser than 1/2: no encoder level is finer than it")
    pooled = [
        keras.layers.AveragePooling2D(cfg.grid_stride // 2 ** (i + 1), name=f"fine{i}_pool")(skip)
        for i, skip in enumerate(finer)
    ]
    fine = keras.layers.Concatenate(name="fine_cat")(pooled) if len(pooled) > 1 else pooled[0]
    proj = keras.layers.Conv2D(int(x.shape[-1]), 1, kernel_initializer="zeros", name="fine_proj")(fine)
    return keras.layers.Add(name="fine_add")([x, proj])


def build_head(cfg: MQNConfig, channels: int) -> keras.Model:
    """Float head: 1x1 conv [+ global offset] + ReLU -> 1x1 conv (zero-initialised log-slopes) -> knots.

    With ``cfg.global_path`` the head has a second input, the same low-resolution SDR the backbone saw
    (float, [0, 1]), and adds one vector per frame (:class:`GlobalStats` -> two dense layers, the last
    zero-initialised so that a warm start begins exactly where the model without it was) to every cell's
    hidden features.
    """
    feats = keras.Input((None, None, channels), name="features")
    if cfg.cell_stats and not (cfg.global_path and cfg.peak_guide):
        raise ValueError("cell_stats needs a head with a global path and a peak guide")
    if not cfg.global_path:
        h = keras.layers.Conv2D(cfg.head_channels, 1, activation="relu", name="head_conv0")(feats)
        inputs: Any = feats
    else:
        sdr = keras.Input((None, None, 3), name="sdr")
        h = keras.layers.Conv2D(cfg.head_channels, 1, name="head_conv0")(feats)
        g = GlobalStats(cfg.histogram_bins, cfg.global_tails, name="global_stats")(feats, sdr)
        g = keras.layers.Dense(cfg.global_channels, activation="relu", name="global_fc0")(g)
        g = keras.layers.Dense(cfg.head_channels, kernel_initializer="zeros", name="global_fc1")(g)
        g = keras.layers.Reshape((1, 1, cfg.head_channels), name="global_bcast")(g)
        fused = [h, g]
        inputs = [feats, sdr]
        if cfg.cell_stats:
            cells = keras.Input((None, None, cell_stats.CHANNELS), name="cells")
            from_cells = keras.layers.Conv2D(
                cfg.head_channels, 1, kernel_initializer="zeros", name="head_cells"
            )
            fused.append(from_cells(cells))
            inputs.append(cells)
        h = keras.layers.ReLU(name="head_relu0")(keras.layers.Add(name="head_fuse")(fused))
    # Zero-initialised: training starts exactly at the BT.2408 placement and learns the expansion from there.
    segments = len(cfg.knots_nits) - 1
    slopes = keras.layers.Conv2D(segments, 1, kernel_initializer="zeros", name="head_log_slopes")(h)
    if cfg.peak_guide:
        # Extra log-slopes start at peak_init (-6: a warm start without a peak curve begins where it was).
        extra = keras.layers.Conv2D(
            segments,
            1,
            kernel_initializer="zeros",
            bias_initializer=keras.initializers.Constant(cfg.peak_init),
            name="head_peak_log_slopes",
        )(h)
        slopes = keras.layers.Concatenate(name="head_slopes")([slopes, extra])
    toe = toe_shape_segments(cfg.knots_nits, cfg.toe_shape_nits)
    if toe:
        shape = keras.layers.Conv2D(toe, 1, kernel_initializer="zeros", name="head_toe_shape")(h)
        slopes = keras.layers.Concatenate(name="head_slopes_and_toe")([slopes, shape])
    out = CurveKnots(
        cfg.knots_nits,
        cfg.max_log_slope,
        paired=cfg.peak_guide,
        toe_knots=cfg.toe_knots,
        toe_shape_nits=cfg.toe_shape_nits,
        name="knots",
    )(slopes)
    if cfg.saturation:
        log_sat = _log_saturation(cfg, h)
        out = keras.layers.Concatenate(name="knots_and_saturation")([out, log_sat])
    return keras.Model(inputs, out, name="mqn_head")


def _log_saturation(cfg: MQNConfig, h: Any) -> Any:
    """The head's two log-saturations per cell, starting at (or, with a soft bound, just above) 0."""
    if not cfg.saturation_soft:
        return keras.layers.Conv2D(2, 1, kernel_initializer="zeros", name="head_log_saturation")(h)
    low, high = cfg.saturation_range
    start = min(max(-low / (high - low), SOFT_SATURATION_START), 1.0 - SOFT_SATURATION_START)
    share = keras.layers.Conv2D(
        2,
        1,
        activation="sigmoid",
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(math.log(start / (1.0 - start))),
        name="head_log_saturation",
    )(h)
    return keras.layers.Rescaling(high - low, offset=low, name="head_saturation_bound")(share)


def run_head(head: keras.Model, features: Any, sdr: Any, cells: Any = None) -> Any:
    """Call a head with the inputs it has.

    Features; the low-resolution SDR if it has a global path; the cell statistics if it reads them.
    """
    return head([features, sdr, cells][: len(head.inputs)]) if len(head.inputs) > 1 else head(features)


def build_mqn(cfg: MQNConfig) -> tuple[keras.Model, keras.Model, keras.Model]:
    """(training model [sdr small, linear full] -> cd/m² full, backbone, head) sharing weights.

    The training model's outputs are the light, the knots and, with ``global_aux``, the frame's two
    auxiliary numbers.

    The training model slices at full crop resolution, so the loss sees full-resolution edges.
    """
    backbone = build_backbone(cfg)
    head = build_head(cfg, int(backbone.output.shape[-1]))
    sdr = keras.Input((None, None, 3), name="sdr")
    linear = keras.Input((None, None, 3), name="linear")
    features = backbone(sdr)
    cells = CellStats(cfg.peak_ratio, name="cell_stats")(linear, features) if cfg.cell_stats else None
    aux: list[Any] = []
    if cfg.global_aux:
        knots, frame_aux = run_head(with_global_aux(head), features, sdr, cells)
        aux.append(frame_aux)
    else:
        knots = run_head(head, features, sdr, cells)
    out = CurveSlice(
        cfg.knots_nits,
        cfg.floor,
        cfg.peak_nits,
        paired=cfg.peak_guide,
        peak_ratio=cfg.peak_ratio,
        saturation=cfg.saturation,
        saturation_range=cfg.saturation_range,
        name="slice",
    )(knots, linear)
    return keras.Model([sdr, linear], [out, knots, *aux], name="mqn"), backbone, head


def with_global_aux(head: keras.Model) -> keras.Model:
    """The head with a second output read off its global path (``MQNConfig.global_aux``), same layers.

    The extra dense layer lives only in this training view of the head, so the head that is exported and
    served is the model without it.
    """
    if "global_fc0" not in {layer.name for layer in head.layers}:
        raise ValueError("global_aux needs a head with a global path")
    hidden = head.get_layer("global_fc0").output
    aux = keras.layers.Dense(2, name="global_aux")(hidden)
    return keras.Model(head.inputs, [head.output, aux], name="mqn_head_aux")


def count_macs(model: keras.Model, height: int, width: int) -> int:
    """Multiply-accumulates of conv / depthwise layers at an input size (what dominates the cost)."""
    import tensorflow as tf

    total = 0
    convs = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D)
    ]
    probe = keras.Model(model.inputs, [layer.output for layer in convs])
    inputs = [np.zeros((1, height, width, int(t.shape[-1])), np.float32) for t in model.inputs]
    outs = probe(inputs if len(inputs) > 1 else inputs[0])
    for layer, o in zip(convs, outs, strict=True):
        k = layer.kernel.shape
        hw = int(tf.reduce_prod(tf.shape(o)[1:3]))
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            total += hw * int(k[0]) * int(k[1]) * int(o.shape[-1])
        else:
            total += hw * int(k[0]) * int(k[1]) * int(k[2]) * int(k[3])
    return total
