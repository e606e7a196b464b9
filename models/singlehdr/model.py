"""SingleHDR (Liu et al., CVPR 2020), reduced in width, in our absolute convention.

"Single-Image HDR Reconstruction by Learning to Reverse the Camera Pipeline". The LDR image is formed by
clipping, a camera response and 8-bit quantization; the network undoes them in that reverse order:

* **dequantization**: a U-Net whose ``tanh`` output, scaled, is *added* to the input codes;
* **linearization**: Sobel edges and a spatial soft histogram of the dequantized image -> a strided CNN,
  global pooling and two dense layers -> weights on a PCA basis of inverse response curves
  (:mod:`models.singlehdr.basis`), kept monotone (ReLU of the curve's differences, normalised), applied to
  every pixel: I_lin in [0, 1], 1.0 = SDR white;
* **hallucination**: a U-Net on I_lin whose output is added only where the soft over-exposure mask
  alpha = max(0, max_c I_lin - 0.95) / 0.05 is on: H = I_lin + alpha * softplus(u);
* **refinement**: a U-Net on (dequantized codes, I_lin, H) whose output z, zero-initialised, moves H as a
  logit of the PQ range: out = PQ(1000) * sigmoid(logit(PQ(203 H) / PQ(1000)) + z).

Light is absolute throughout: relative light 1.0 is SDR white at 203 cd/m² (the targets put mid-tones where
BT.2408 puts the SDR's), PQ of absolute light clipped at 1000 cd/m², and nothing is min-max normalised. Every
U-Net pads with repeated edge pixels (MQN's lesson), pools by 2 and upsamples bilinearly to its skip: frame
sides are multiples of ``stride``.

The split for LiteRT: ``features`` is the dequantization U-Net (full int8: it reads raw codes and writes a
small bounded residual); ``head`` is everything after it (float activations: linear light and the curve
need more than 8 bits). The head ends in the logit; the operator turns it into light.

features: frame N x H x W x 3, codes in [0, 1] -> N x H x W x 3 residual
head:     frame, residual -> N x H x W x 3 logit of PQ / PQ(1000)
"""

from dataclasses import asdict, dataclass
from typing import Any

import keras

from models.mqn.convention import nits_to_pq
from models.mqn.layers import EdgePad, ResizeLike
from models.singlehdr.basis import COMPONENTS, KNOTS
from models.singlehdr.layers import (
    AnchoredLogit,
    ApplyCurve,
    Dequantize,
    Hallucinate,
    OverExposureMask,
    RelativeToPQ,
    ResponseCurve,
    Sobel,
    SoftHistogram,
)
from service.colour.scaling import SDR_WHITE_NITS
from service.operators.expandnet import LOGIT_EPS
from service.operators.singlehdr import FRAME_INPUT, RESIDUAL_INPUT

LEAK = 0.1
"""The paper's leaky ReLU slope."""
STAGES = ("deq", "lin", "hal", "ref")


@dataclass(frozen=True)
class SingleHDRConfig:
    """Architecture hyper-parameters (stored next to checkpoints and artefacts)."""

    unet_channels: tuple[int, ...] = (8, 16, 32, 64)
    """Channels per U-Net level (two 3x3 convolutions each); the paper: six levels, 16 to 512 (Deq/Ref)."""
    deq_scale: float = 0.05
    """Bound of the dequantization residual in code values (tanh * scale; the paper: tanh, scale 1)."""
    lin_channels: tuple[int, ...] = (16, 32, 32, 64)
    """Stride-2 3x3 convolutions of the linearization encoder (the paper: a ResNet-18)."""
    lin_dense: int = 64
    hist_bins: int = 8
    components: int = COMPONENTS
    mask_gamma: float = 0.95
    peak_nits: float = 1000.0

    @property
    def stride(self) -> int:
        """Frame sides must be multiples of this (the U-Nets pool by 2 between levels)."""
        return int(2 ** (len(self.unet_channels) - 1))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (lists for tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SingleHDRConfig":
        """Inverse of :meth:`to_json`.

        Raises
        ------
        ValueError
            For an unknown key, or fewer than two U-Net levels.
        """
        known = set(cls.__dataclass_fields__)
        if set(d) - known:
            raise ValueError(f"model keys {sorted(set(d) - known)} are not known; expected {sorted(known)}")
        cfg = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
        if len(cfg.unet_channels) < 2:
            raise ValueError(f"unet_channels {cfg.unet_channels} must have at least two levels")
        return cfg


def _conv(x: Any, filters: int, name: str) -> Any:
    """Edge-padded 3x3 convolution + leaky ReLU."""
    x = EdgePad(name=f"{name}_pad")(x)
    x = keras.layers.Conv2D(filters, 3, padding="valid", name=name)(x)
    return keras.layers.LeakyReLU(LEAK, name=f"{name}_act")(x)


def unet(x: Any, channels: tuple[int, ...], out_channels: int, name: str, zero_out: bool = False) -> Any:
    """The paper's U-Net shape: two convolutions per level, average pooling down, bilinear up, skips."""
    skips = []
    for i, ch in enumerate(channels):
        if i:
            x = keras.layers.AveragePooling2D(2, name=f"{name}_down{i}")(x)
        x = _conv(_conv(x, ch, f"{name}_e{i}a"), ch, f"{name}_e{i}b")
        skips.append(x)
    for i in reversed(range(len(channels) - 1)):
        x = ResizeLike(name=f"{name}_up{i}")(x, skips[i])
        x = keras.layers.Concatenate(name=f"{name}_cat{i}")([x, skips[i]])
        x = _conv(_conv(x, channels[i], f"{name}_d{i}a"), channels[i], f"{name}_d{i}b")
    init = "zeros" if zero_out else "glorot_uniform"
    return keras.layers.Conv2D(out_channels, 1, kernel_initializer=init, name=f"{name}_out")(x)


def build_deq(cfg: SingleHDRConfig) -> keras.Model:
    """Dequantization-Net: codes -> bounded residual (tanh * ``deq_scale``), zero at initialisation."""
    frame = keras.Input((None, None, 3), name=FRAME_INPUT)
    u = unet(frame, cfg.unet_channels, 3, "deq", zero_out=True)
    r = keras.layers.Activation("tanh", name="deq_tanh")(u)
    r = keras.layers.Rescaling(cfg.deq_scale, name="deq_scale")(r)
    return keras.Model(frame, r, name="singlehdr_deq")


def build_lin(cfg: SingleHDRConfig) -> keras.Model:
    """Linearization-Net: dequantized codes -> the frame's inverse response (``KNOTS - 1`` increments)."""
    x = keras.Input((None, None, 3), name="dequantized")
    h = keras.layers.Concatenate(name="lin_inputs")(
        [x, Sobel(name="lin_sobel")(x), SoftHistogram(cfg.hist_bins, name="lin_hist")(x)]
    )
    for i, ch in enumerate(cfg.lin_channels):
        h = keras.layers.Conv2D(ch, 3, strides=2, padding="same", name=f"lin_conv{i}")(h)
        h = keras.layers.LeakyReLU(LEAK, name=f"lin_conv{i}_act")(h)
    h = keras.layers.GlobalAveragePooling2D(name="lin_pool")(h)
    h = keras.layers.Dense(cfg.lin_dense, name="lin_fc0")(h)
    h = keras.layers.LeakyReLU(LEAK, name="lin_fc0_act")(h)
    w = keras.layers.Dense(cfg.components, kernel_initializer="zeros", name="lin_pca")(h)
    return keras.Model(x, ResponseCurve(cfg.components, name="lin_curve")(w), name="singlehdr_lin")


def build_hal(cfg: SingleHDRConfig) -> keras.Model:
    """Hallucination-Net: PQ of the linearized frame -> content u (added as alpha * softplus(u))."""
    x = keras.Input((None, None, 3), name="linear_pq")
    return keras.Model(x, unet(x, cfg.unet_channels, 3, "hal"), name="singlehdr_hal")


def build_ref(cfg: SingleHDRConfig) -> keras.Model:
    """Refinement-Net: (dequantized codes, PQ of I_lin, PQ of H) -> logit offset z, zero at initialisation."""
    x = keras.Input((None, None, 9), name="stages")
    return keras.Model(x, unet(x, cfg.unet_channels, 3, "ref", zero_out=True), name="singlehdr_ref")


@dataclass(frozen=True)
class SingleHDR:
    """The built network: the training model and its parts (all sharing weights)."""

    model: keras.Model
    """frame -> [dequantized codes, PQ of I_lin, alpha, PQ of H, PQ out] (training, validation)."""
    features: keras.Model
    """The int8 part: the dequantization U-Net."""
    head: keras.Model
    """The float part: [frame, residual] -> logit."""
    stages: dict[str, keras.Model]
    """``deq``, ``lin``, ``hal``, ``ref``: what each training phase unfreezes."""


def build_singlehdr(cfg: SingleHDRConfig) -> SingleHDR:
    """All four stages, wired as the paper's pipeline, in our absolute convention."""
    pq_peak = float(nits_to_pq(cfg.peak_nits))
    deq, lin, hal, ref = build_deq(cfg), build_lin(cfg), build_hal(cfg), build_ref(cfg)
    frame = keras.Input((None, None, 3), name=FRAME_INPUT)
    residual = keras.Input((None, None, 3), name=RESIDUAL_INPUT)
    x_deq = Dequantize(name="dequantize")(frame, residual)
    linear = ApplyCurve(KNOTS - 1, name="linearize")(x_deq, lin(x_deq))
    to_pq = RelativeToPQ(SDR_WHITE_NITS, cfg.peak_nits, name="linear_to_pq")
    lin_pq = to_pq(linear)
    alpha = OverExposureMask(cfg.mask_gamma, name="mask")(linear)
    hdr = Hallucinate(name="hallucinate")(linear, alpha, hal(lin_pq))
    h_pq = RelativeToPQ(SDR_WHITE_NITS, cfg.peak_nits, name="hdr_to_pq")(hdr)
    z = ref(keras.layers.Concatenate(name="ref_inputs")([x_deq, lin_pq, h_pq]))
    logit = AnchoredLogit(pq_peak, LOGIT_EPS, name="anchor")(h_pq, z)
    head = keras.Model([frame, residual], logit, name="singlehdr_head")
    parts = keras.Model([frame, residual], [x_deq, lin_pq, alpha, h_pq, logit], name="singlehdr_parts")
    x = keras.Input((None, None, 3), name=FRAME_INPUT)
    x_deq_t, lin_pq_t, alpha_t, h_pq_t, logit_t = parts([x, deq(x)])
    out = keras.layers.Activation("sigmoid", name="out_sigmoid")(logit_t)
    out = keras.layers.Rescaling(pq_peak, name="out_pq")(out)
    model = keras.Model(x, [x_deq_t, lin_pq_t, alpha_t, h_pq_t, out], name="singlehdr")
    return SingleHDR(model, deq, head, {"deq": deq, "lin": lin, "hal": hal, "ref": ref})


def _unet_macs(channels: tuple[int, ...], c_in: int, c_out: int, pixels: float) -> float:
    total, level_pixels, prev = 0.0, pixels, c_in
    for i, ch in enumerate(channels):
        level_pixels = pixels / 4**i
        total += level_pixels * 9 * (prev * ch + ch * ch)
        prev = ch
    for i in reversed(range(len(channels) - 1)):
        level_pixels = pixels / 4**i
        total += level_pixels * 9 * ((prev + channels[i]) * channels[i] + channels[i] ** 2)
        prev = channels[i]
    return total + pixels * prev * c_out


def count_macs(cfg: SingleHDRConfig, height: int, width: int) -> int:
    """Multiply-accumulates of every convolution and dense layer for one frame (what dominates the cost)."""
    px = float(height * width)
    macs = 2 * _unet_macs(cfg.unet_channels, 3, 3, px) + _unet_macs(cfg.unet_channels, 9, 3, px)
    c_in, side = 3 + 6 + 3 * cfg.hist_bins, px
    macs += px * 3 * 2 * 9 + px * 3 * cfg.hist_bins  # Sobel, histogram bins
    for ch in cfg.lin_channels:
        side /= 4
        macs += side * 9 * c_in * ch
        c_in = ch
    macs += c_in * cfg.lin_dense + cfg.lin_dense * cfg.components
    macs += px * 3 * (KNOTS - 1) * 2  # the curve's ramps and sums (1x1 convolutions)
    return int(macs)
