"""The region-map ConvLSTM (Oh, Shin and Hong, CMC 2022), reduced in width, in our absolute convention.

"Use of Local Region Maps on Convolutional LSTM for Single-Image HDR Reconstruction", Computers, Materials &
Continua 70(3). The paper's pipeline, part by part:

* **region maps**: per channel, the frame split into N = 5 maps by its cumulative histogram (20 % of the
  pixels each; :func:`service.operators.region_lstm.region_bounds`), a code value in the map of its region;
* **SParam-Net**: a VGG-style CNN (13 3x3 convolutions in five blocks, four 2x2 max-pools, average pooling,
  three dense layers) on a 256² view of the frame and its region maps (18 channels) -> four parameters of an
  inverse Reinhard S-curve, which makes the **pseudo-HDR** image
  (:class:`~models.region_lstm.layers.PseudoHDR`: anchored on mid-grey, bounded expansion of white);
* **ConvLSTM-Net encoder**: two ConvLSTM layers over the sequence of the five region maps, brightest first,
  each step's input the map joined with the pseudo-HDR image (6 channels); gates = one 3x3 convolution of
  [x, h], written as conv(x) + conv(h) and unrolled over the five steps (only builtin ops);
* **FSRCNN decoder** on the last hidden state: feature extraction (5x5), shrinking (1x1), mapping (four 3x3),
  expanding (1x1), each with a PReLU, and a deconvolution to 3 channels.

What is ours (the model card's table says why): widths; the ConvLSTM and the decoder run at 1/``stride`` of
each side (region maps and pseudo-HDR average-pooled), and the deconvolution has stride ``stride`` (FSRCNN's
upscaling deconvolution), so its output is at the frame's resolution; the curve's scale comes from the
BT.2408 placement, not the image's log-average; and the output. The paper ends in a ReLU of normalised
light; here the deconvolution (zero-initialised) gives a logit correction z on top of the pseudo-HDR image,
and the head outputs the offset from the BT.2408 placement
(:class:`~models.region_lstm.layers.AnchorOffset`), so PQ out = PQ(1000) * sigmoid(logit(pseudo-HDR) + z).

The split for LiteRT: ``features`` is SParam-Net (full int8: it reads 8-bit codes and gives four logits);
``head`` is everything after it (float activations: linear light, the curve, the recurrent state).

features: sparam_view N x 256 x 256 x 18 (codes in [0, 1]) -> N x 4 curve logits
head:     frame N x H x W x 3 codes, anchor (PQ of the BT.2408 placement), bounds N x 1 x 1 x 12,
          curve N x 4 -> N x H x W x 3 logit offsets; H, W multiples of ``stride``
"""

from dataclasses import asdict, dataclass
from typing import Any

import keras

from models.expandnet.model import AnchoredSigmoid
from models.mqn.convention import nits_to_pq
from models.mqn.layers import EdgePad
from models.region_lstm.layers import MID_GREY, AnchorOffset, Crop, LSTMGates, PseudoHDR, RegionMaps
from service.colour.scaling import SDR_WHITE_NITS
from service.operators.expandnet import LOGIT_EPS
from service.operators.region_lstm import (
    ANCHOR_INPUT,
    BOUNDS_INPUT,
    CURVE_INPUT,
    FRAME_INPUT,
    REGIONS,
    SPARAM_INPUT,
)

CURVE_PARAMS = 4
"""L'max and the R, G, B white points, as in the paper."""
POOLED_SIDE = 4
"""SParam-Net's last feature map is average-pooled to 4 x 4 (the paper: adaptive pooling to 7 x 7)."""


@dataclass(frozen=True)
class RegionLSTMConfig:
    """Architecture hyper-parameters (stored next to checkpoints and artefacts)."""

    sparam_size: int = 256
    sparam_channels: tuple[int, ...] = (8, 16, 32, 32, 32)
    """Channels of SParam-Net's five VGG blocks (the paper: VGG-16's 64, 128, 256, 512, 512)."""
    sparam_convs: tuple[int, ...] = (2, 2, 3, 3, 3)
    """3x3 convolutions per block: VGG-16's 13."""
    sparam_dense: int = 64
    """Width of the two hidden dense layers (the paper: 4096)."""
    lstm_channels: tuple[int, int] = (16, 6)
    """Hidden channels of the two ConvLSTM layers (the paper: 64 and 6)."""
    stride: int = 4
    """The ConvLSTM and the decoder run at 1 / stride of each side; the deconvolution brings them back."""
    fsrcnn_d: int = 16
    """FSRCNN's feature and expanding width d (the paper: 64)."""
    fsrcnn_s: int = 8
    """FSRCNN's shrunk width s (the paper: 12)."""
    fsrcnn_m: int = 4
    """FSRCNN's mapping layers m (the paper: 4)."""
    mid_grey: float = MID_GREY
    peak_nits: float = 1000.0

    @property
    def deconv_kernel(self) -> int:
        """2 x stride (an even overlap, no checkerboard); the paper's 9 at stride 1."""
        return 9 if self.stride == 1 else 2 * self.stride

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (lists for tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RegionLSTMConfig":
        """Inverse of :meth:`to_json`.

        Raises
        ------
        ValueError
            For an unknown key, or a SParam view the pooling does not bring to 4 x 4.
        """
        known = set(cls.__dataclass_fields__)
        if set(d) - known:
            raise ValueError(f"model keys {sorted(set(d) - known)} are not known; expected {sorted(known)}")
        cfg = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
        pools = len(cfg.sparam_channels) - 1
        if len(cfg.sparam_convs) != len(cfg.sparam_channels) or cfg.sparam_size % (2**pools * POOLED_SIDE):
            raise ValueError(
                f"sparam_size {cfg.sparam_size} must be a multiple of {2**pools * POOLED_SIDE} and "
                f"sparam_convs {cfg.sparam_convs} must name one count per block of {cfg.sparam_channels}"
            )
        return cfg


def build_sparam(cfg: RegionLSTMConfig) -> keras.Model:
    """SParam-Net: the view and its region maps (codes in [0, 1]) -> four curve logits (zero at start)."""
    x = keras.Input((cfg.sparam_size, cfg.sparam_size, 3 * (REGIONS + 1)), name=SPARAM_INPUT)
    h = x
    for b, (ch, n) in enumerate(zip(cfg.sparam_channels, cfg.sparam_convs, strict=True)):
        if b:
            h = keras.layers.MaxPooling2D(2, name=f"sp_pool{b}")(h)
        for i in range(n):
            h = keras.layers.Conv2D(ch, 3, padding="same", activation="relu", name=f"sp_conv{b}_{i}")(h)
    side = cfg.sparam_size // 2 ** (len(cfg.sparam_channels) - 1)
    h = keras.layers.AveragePooling2D(side // POOLED_SIDE, name="sp_avg")(h)
    h = keras.layers.Flatten(name="sp_flat")(h)
    for i in range(2):
        h = keras.layers.Dense(cfg.sparam_dense, activation="relu", name=f"sp_fc{i}")(h)
    out = keras.layers.Dense(CURVE_PARAMS, kernel_initializer="zeros", name="sp_params")(h)
    return keras.Model(x, out, name="region_lstm_sparam")


def _conv(x: Any, filters: int, size: int, name: str, **kwargs: Any) -> Any:
    """Edge-padded ``size`` x ``size`` convolution (MQN's padding: no dark borders)."""
    for i in range(size // 2):
        x = EdgePad(name=f"{name}_pad{i}")(x)
    return keras.layers.Conv2D(filters, size, padding="valid", name=name, **kwargs)(x)


class ConvLSTMLayer:
    """One ConvLSTM layer: its two convolutions, called once per step (shared weights, unrolled)."""

    def __init__(self, channels: int, name: str) -> None:
        self.channels = channels
        self.name = name
        self.conv_x = keras.layers.Conv2D(4 * channels, 3, padding="valid", name=f"{name}_x")
        self.conv_h = keras.layers.Conv2D(4 * channels, 3, padding="valid", use_bias=False, name=f"{name}_h")

    def step(self, x: Any, state: tuple[Any, Any] | None, t: int) -> tuple[Any, Any]:
        """(h, c) after input ``x`` at step ``t``; ``state`` None is the zero state."""
        gates = self.conv_x(EdgePad(name=f"{self.name}_padx{t}")(x))
        if state is None:
            return LSTMGates(name=f"{self.name}_gates{t}")(gates)  # type: ignore[no-any-return]
        h, c = state
        gates = keras.layers.Add(name=f"{self.name}_sum{t}")(
            [gates, self.conv_h(EdgePad(name=f"{self.name}_padh{t}")(h))]
        )
        return LSTMGates(name=f"{self.name}_gates{t}")(gates, c)  # type: ignore[no-any-return]

    def forget_bias(self, value: float = 1.0) -> None:
        """Start the forget gate open (bias ``value``), as is usual for LSTMs; after the model is built."""
        kernel, bias = self.conv_x.get_weights()
        bias[self.channels : 2 * self.channels] = value
        self.conv_x.set_weights([kernel, bias])


def decoder(h: Any, cfg: RegionLSTMConfig) -> Any:
    """FSRCNN: extraction, shrinking, mapping, expanding (PReLU each), deconvolution (zero-initialised)."""

    def prelu(x: Any, name: str) -> Any:
        return keras.layers.PReLU(shared_axes=[1, 2], name=f"{name}_prelu")(x)

    x = prelu(_conv(h, cfg.fsrcnn_d, 5, "fs_extract"), "fs_extract")
    x = prelu(keras.layers.Conv2D(cfg.fsrcnn_s, 1, name="fs_shrink")(x), "fs_shrink")
    for i in range(cfg.fsrcnn_m):
        x = prelu(_conv(x, cfg.fsrcnn_s, 3, f"fs_map{i}"), f"fs_map{i}")
    x = prelu(keras.layers.Conv2D(cfg.fsrcnn_d, 1, name="fs_expand")(x), "fs_expand")
    x = EdgePad(name="fs_deconv_pad")(x)
    x = keras.layers.Conv2DTranspose(
        3, cfg.deconv_kernel, strides=cfg.stride, padding="same", kernel_initializer="zeros", name="fs_deconv"
    )(x)
    return Crop(cfg.stride, name="fs_crop")(x)


@dataclass(frozen=True)
class RegionLSTM:
    """The built network: the training models and the two exported parts (all sharing weights)."""

    model: keras.Model
    """[frame, sparam_view, anchor, bounds] -> [PQ of the pseudo-HDR image, PQ out] (phase 2, validation)."""
    pseudo: keras.Model
    """[sparam_view, anchor] -> PQ of the pseudo-HDR image: SParam-Net's pre-training (phase 1)."""
    features: keras.Model
    """The int8 part: SParam-Net."""
    head: keras.Model
    """The float part: [frame, anchor, bounds, curve] -> logit offsets from the BT.2408 placement."""


def build_region_lstm(cfg: RegionLSTMConfig) -> RegionLSTM:
    """All parts, wired as the paper's pipeline, in our absolute convention."""
    pq_peak = float(nits_to_pq(cfg.peak_nits))
    sparam = build_sparam(cfg)
    frame = keras.Input((None, None, 3), name=FRAME_INPUT)
    anchor = keras.Input((None, None, 3), name=ANCHOR_INPUT)
    bounds = keras.Input((1, 1, 3 * (REGIONS - 1)), name=BOUNDS_INPUT)
    curve = keras.Input((CURVE_PARAMS,), name=CURVE_INPUT)
    pseudo = PseudoHDR(SDR_WHITE_NITS, cfg.peak_nits, cfg.mid_grey, name="pseudo_hdr")(anchor, curve)
    maps = RegionMaps(REGIONS, name="region_maps")(frame, bounds)
    pseudo_lo, maps_lo = pseudo, maps
    if cfg.stride > 1:
        pseudo_lo = keras.layers.AveragePooling2D(cfg.stride, name="pseudo_pool")(pseudo)
        maps_lo = keras.layers.AveragePooling2D(cfg.stride, name="maps_pool")(maps)
    layers = [ConvLSTMLayer(ch, f"lstm{i}") for i, ch in enumerate(cfg.lstm_channels)]
    states: list[tuple[Any, Any] | None] = [None] * len(layers)
    for t in range(REGIONS):  # brightest region first
        x = keras.layers.Concatenate(name=f"step{t}_in")([maps_lo[..., 3 * t : 3 * t + 3], pseudo_lo])
        for i, layer in enumerate(layers):
            states[i] = layer.step(x, states[i], t)
            x = states[i][0]  # type: ignore[index]
    z = decoder(x, cfg)
    offsets = AnchorOffset(pq_peak, LOGIT_EPS, name="offsets")(pseudo, anchor, z)
    head_parts = keras.Model([frame, anchor, bounds, curve], [pseudo, offsets], name="region_lstm_parts")
    head = keras.Model([frame, anchor, bounds, curve], offsets, name="region_lstm_head")
    for layer in layers:
        layer.forget_bias()

    frame_t = keras.Input((None, None, 3), name=FRAME_INPUT)
    view_t = keras.Input((cfg.sparam_size, cfg.sparam_size, 3 * (REGIONS + 1)), name=SPARAM_INPUT)
    anchor_t = keras.Input((None, None, 3), name=ANCHOR_INPUT)
    bounds_t = keras.Input((1, 1, 3 * (REGIONS - 1)), name=BOUNDS_INPUT)
    curve_t = sparam(view_t)
    pseudo_t, offsets_t = head_parts([frame_t, anchor_t, bounds_t, curve_t])
    out = AnchoredSigmoid(pq_peak, LOGIT_EPS, name="out_pq")(offsets_t, anchor_t)
    model = keras.Model([frame_t, view_t, anchor_t, bounds_t], [pseudo_t, out], name="region_lstm")
    only = PseudoHDR(SDR_WHITE_NITS, cfg.peak_nits, cfg.mid_grey, name="pseudo_only")(anchor_t, curve_t)
    pseudo_model = keras.Model([view_t, anchor_t], only, name="region_lstm_pseudo")
    return RegionLSTM(model, pseudo_model, sparam, head)


def count_macs(cfg: RegionLSTMConfig, height: int, width: int) -> int:
    """Multiply-accumulates of every convolution and dense layer for one frame (what dominates the cost)."""
    side = cfg.sparam_size
    macs, c_in = 0.0, 3 * (REGIONS + 1)
    for b, (ch, n) in enumerate(zip(cfg.sparam_channels, cfg.sparam_convs, strict=True)):
        if b:
            side //= 2
        for _ in range(n):
            macs += side * side * 9 * c_in * ch
            c_in = ch
    dense_in = POOLED_SIDE**2 * c_in
    macs += dense_in * cfg.sparam_dense + cfg.sparam_dense**2 + cfg.sparam_dense * CURVE_PARAMS
    lo = float(height * width) / cfg.stride**2
    c1, c2 = cfg.lstm_channels
    per_step = 9 * 4 * (6 * c1 + c1 * c1 + c1 * c2 + c2 * c2)
    first = 9 * 4 * (6 * c1 + c1 * c2)  # no recurrent convolution on the zero state
    macs += lo * (first + (REGIONS - 1) * per_step)
    d, s = cfg.fsrcnn_d, cfg.fsrcnn_s
    macs += lo * (25 * c2 * d + d * s + cfg.fsrcnn_m * 9 * s * s + s * d)
    padded = (height / cfg.stride + 2) * (width / cfg.stride + 2)  # the deconvolution's edge-padded input
    macs += padded * cfg.deconv_kernel**2 * d * 3
    return int(macs)
