"""MQN architecture: int8-friendly MobileNetV2-0.35 U-Net backbone + high-precision head.

The split into two Keras models is the point of the design (Borrego-Carazo et al., BMVC 2021): the
backbone tolerates full int8 quantization, the small head that produces the final HDR values runs with float
activations (dynamic-range quantization), which keeps precision where banding would show.

backbone: SDR code values (N x H x W x 3 in [0, 1]) -> features (N x H x W x F) at full resolution
head:     (features, base PQ) -> HDR PQ code, N x H x W x 3, absolute convention of models.mqn.convention
"""

from dataclasses import asdict, dataclass
from typing import Any

import keras
import numpy as np

from models.mqn.convention import PQ_PEAK
from models.mqn.layers import (
    ChannelAttention,
    InstanceNorm,
    ResidualBound,
    ResizeLike,
    SpatialAttention,
    ToUnit,
)

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


@dataclass(frozen=True)
class MQNConfig:
    """Architecture hyper-parameters (stored next to checkpoints and artefacts)."""

    width: float = 0.35
    decoder_channels: tuple[int, int, int, int] = (64, 48, 32, 24)
    """Decoder output channels at 1/16, 1/8, 1/4, 1/2."""
    features: int = 16
    """Channels of the full-resolution feature map handed from backbone to head."""
    attention: str = "ca"
    """"ca" channel, "sa" spatial, "csa" both, "none"."""
    residual_scale: float = 0.25
    upper: float = PQ_PEAK

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        d = asdict(self)
        d["decoder_channels"] = list(self.decoder_channels)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "MQNConfig":
        """Inverse of :meth:`to_json`."""
        d = dict(d)
        if "decoder_channels" in d:
            d["decoder_channels"] = tuple(d["decoder_channels"])
        return cls(**d)


def _divisible(v: float, divisor: int = 8) -> int:
    """MobileNet channel rounding (never below 90% of ``v``)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _conv_bn(x: Any, filters: int, kernel: int, stride: int, act: str | None, name: str) -> Any:
    x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    if act == "relu6":
        x = keras.layers.ReLU(6.0, name=f"{name}_relu6")(x)
    elif act == "relu":
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def irlb(x: Any, filters: int, expansion: int, stride: int, name: str) -> Any:
    """Inverted residual linear bottleneck (MobileNetV2): 1x1 expand, 3x3 depthwise, 1x1 linear project."""
    c_in = int(x.shape[-1])
    h = x
    if expansion != 1:
        h = _conv_bn(h, c_in * expansion, 1, 1, "relu6", f"{name}_expand")
    h = keras.layers.DepthwiseConv2D(3, stride, padding="same", use_bias=False, name=f"{name}_dw")(h)
    h = keras.layers.BatchNormalization(name=f"{name}_dw_bn")(h)
    h = keras.layers.ReLU(6.0, name=f"{name}_dw_relu6")(h)
    h = _conv_bn(h, filters, 1, 1, None, f"{name}_project")
    if stride == 1 and c_in == filters:
        h = keras.layers.Add(name=f"{name}_add")([x, h])
    return h


def _attention(x: Any, kind: str, name: str) -> Any:
    if kind in ("ca", "csa"):
        x = ChannelAttention(0.5, name=f"{name}_ca")(x)
    if kind in ("sa", "csa"):
        x = SpatialAttention(7, name=f"{name}_sa")(x)
    return x


def build_backbone(cfg: MQNConfig) -> keras.Model:
    """MobileNetV2 encoder (skips at 1/2 .. 1/32) + U-Net decoder with attention; full-res features out."""
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
    # skips: 1/2 (after stem+block0), 1/4, 1/8, 1/16; x is 1/32
    for level, (skip, ch) in enumerate(zip(reversed(skips), cfg.decoder_channels, strict=True)):
        name = f"dec{level}"
        x = ResizeLike(name=f"{name}_up")(x, skip)
        x = keras.layers.Concatenate(name=f"{name}_cat")([x, skip])
        x = irlb(x, ch, 6, 1, f"{name}_b0")
        x = _attention(x, cfg.attention, name)
        x = irlb(x, ch, 6, 1, f"{name}_b1")
    x = _conv_bn(x, cfg.features, 1, 1, "relu", "dec_half")
    x = ResizeLike(name="dec_full_up")(x, sdr)
    x = keras.layers.Concatenate(name="dec_full_cat")([x, sdr])
    x = _conv_bn(x, cfg.features, 1, 1, "relu", "dec_full")
    return keras.Model(sdr, x, name="mqn_backbone")


def build_head(cfg: MQNConfig) -> keras.Model:
    """High-precision head: conv3x3(12)+IN+ReLU -> conv1x1(6)+IN+ReLU -> conv1x1(3, tanh) -> bound."""
    feats = keras.Input((None, None, cfg.features), name="features")
    base = keras.Input((None, None, 3), name="base")
    h = keras.layers.Conv2D(12, 3, padding="same", name="head_conv0")(feats)
    h = InstanceNorm(name="head_in0")(h)
    h = keras.layers.ReLU(name="head_relu0")(h)
    h = keras.layers.Conv2D(6, 1, name="head_conv1")(h)
    h = InstanceNorm(name="head_in1")(h)
    h = keras.layers.ReLU(name="head_relu1")(h)
    # Zero-initialised: training starts exactly at the BT.2408 baseline and learns the expansion from there.
    h = keras.layers.Conv2D(3, 1, activation="tanh", kernel_initializer="zeros", name="head_conv2")(h)
    out = ResidualBound(cfg.residual_scale, cfg.upper, name="hdr_pq")(h, base)
    return keras.Model([feats, base], out, name="mqn_head")


def build_mqn(cfg: MQNConfig) -> tuple[keras.Model, keras.Model, keras.Model]:
    """(full training model [sdr, base] -> pq, backbone, head) sharing weights."""
    backbone = build_backbone(cfg)
    head = build_head(cfg)
    sdr = keras.Input((None, None, 3), name="sdr")
    base = keras.Input((None, None, 3), name="base")
    out = head([backbone(sdr), base])
    return keras.Model([sdr, base], out, name="mqn"), backbone, head


EXPORT_SPLIT = "dec_half_relu"
"""Last layer of the int8 part. Everything after it (resize to full resolution, concat with the input,
1x1 conv + BN + ReLU, then the head) runs with float activations: measured on the trained model, the int8
features at this point keep ~28 dB SNR per channel, but the full-resolution concat forces the 8-bit input
onto the features' quantization scale and the SNR of the full-resolution features drops below 0 dB."""


def export_models(
    backbone: keras.Model, head: keras.Model, cfg: MQNConfig
) -> tuple[keras.Model, keras.Model]:
    """Re-cut the trained graph for deployment: (int8 part, float part), sharing the trained layers.

    int8 part: SDR in [0, 1] -> half-resolution features. float part: (features, SDR uint8, base PQ) -> PQ.
    Together they compute exactly the training model.
    """
    q = keras.Model(backbone.input, backbone.get_layer(EXPORT_SPLIT).output, name="mqn_backbone_int8")
    feats = keras.Input((None, None, int(q.output.shape[-1])), name="features")
    sdr = keras.Input((None, None, 3), dtype="uint8", name="sdr")
    base = keras.Input((None, None, 3), name="base")
    x01 = ToUnit(name="sdr_unit")(sdr)
    x = backbone.get_layer("dec_full_up")(feats, x01)
    x = backbone.get_layer("dec_full_cat")([x, x01])
    for name in ("dec_full_conv", "dec_full_bn", "dec_full_relu"):
        x = backbone.get_layer(name)(x)
    out = head([x, base])
    return q, keras.Model([feats, sdr, base], out, name="mqn_head_float")


def count_macs(model: keras.Model, height: int, width: int) -> int:
    """Multiply-accumulates of conv / depthwise layers at an input size (what dominates the cost)."""
    import tensorflow as tf

    total = 0
    probe = keras.Model(
        model.inputs,
        [
            layer.output
            for layer in model.layers
            if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D)
        ],
    )
    inputs = [np.zeros((1, height, width, int(t.shape[-1])), np.float32) for t in model.inputs]
    outs = probe(inputs if len(inputs) > 1 else inputs[0])
    convs = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D)
    ]
    for layer, o in zip(convs, outs, strict=True):
        k = layer.kernel.shape
        hw = int(tf.reduce_prod(tf.shape(o)[1:3]))
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            total += hw * int(k[0]) * int(k[1]) * int(o.shape[-1])
        else:
            total += hw * int(k[0]) * int(k[1]) * int(k[2]) * int(k[3])
    return total
