"""ExpandNet architecture (Marnerides et al., Eurographics 2018), in our absolute convention.

"ExpandNet: A Deep Convolutional Neural Network for High Dynamic Range Expansion from Low Dynamic Range
Content", Computer Graphics Forum 37(2).

Three branches and no upsampling anywhere, as in the paper:

* **local**: two 3x3 convolutions at full resolution (paper: 64, 128 channels);
* **dilated**: four 3x3 convolutions with dilation 2 at full resolution (paper: 64 each; the last linear);
* **global**: the frame resized to 256 x 256, six stride-2 3x3 convolutions down to 4 x 4 and a 4x4 ``valid``
  convolution to one feature vector (paper: 64 channels; the last linear), broadcast over the frame;
* **fusion**: 1x1 convolution of the three (paper: 256 -> 64, SELU) and a 1x1 convolution to RGB.

SELU after every convolution except the last of the dilated and global branches (as the authors' code).
What is ours (see the model card for why): the widths (a CPU budget), edge-replicating input padding instead
of zero padding, the global view resized outside the graph (Pillow's antialiased bilinear, the same function
in training and serving), and the output. The paper ends in a sigmoid of min-max normalised light; here the
sigmoid is kept but *anchored*: the last 1x1 convolution predicts a logit offset from the BT.2408 placement of
the SDR (:class:`AnchoredSigmoid`), and the sigmoid spans PQ 0 .. PQ(1000 cd/m²). So the output is PQ of
absolute light, a zero offset is exactly the ``bt2408`` operator, and no frame statistic scales it.

The split for LiteRT is MQN's: ``features`` (branches + first fusion layer, full int8) and ``head`` (the last
1x1 convolution, float activations). The anchored sigmoid and the PQ decode run in the operator.

features: frame N x H x W x 3 and global view N x 256 x 256 x 3, SDR code values in [0, 1] -> N x H x W x F
head:     N x H x W x F -> N x H x W x 3 logit offsets
"""

from dataclasses import asdict, dataclass
from typing import Any

import keras
import tensorflow as tf

from models.expandnet.layers import SELU, BroadcastAdd, DilatedConv2D, ReplicatePad
from models.mqn.convention import PQ_PEAK, nits_to_pq
from service.operators.expandnet import FRAME_INPUT, GLOBAL_INPUT, LOGIT_EPS


@dataclass(frozen=True)
class ExpandNetConfig:
    """Architecture hyper-parameters (stored next to checkpoints and artefacts). Defaults: the paper's."""

    local_channels: tuple[int, ...] = (64, 128)
    dilated_channels: tuple[int, ...] = (64, 64, 64, 64)
    dilation: int = 2
    global_channels: int = 64
    global_size: int = 256
    global_strided: int = 6
    """Stride-2 convolutions of the global branch: 256 / 2**6 = 4, then one 4x4 ``valid`` convolution."""
    fusion_channels: int = 64
    peak_nits: float = 1000.0

    @property
    def radius(self) -> int:
        """Pixels of context each full-resolution output reads on each side (the input is padded by it)."""
        return max(len(self.local_channels), len(self.dilated_channels) * self.dilation)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (lists for tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ExpandNetConfig":
        """Inverse of :meth:`to_json`.

        Raises
        ------
        ValueError
            For an unknown key, or a global view that the strided convolutions do not bring to 4 x 4.
        """
        known = set(cls.__dataclass_fields__)
        if set(d) - known:
            raise ValueError(f"model keys {sorted(set(d) - known)} are not known; expected {sorted(known)}")
        cfg = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
        if cfg.global_size != 4 * 2**cfg.global_strided:
            raise ValueError(
                f"global_size {cfg.global_size} must be 4 * 2**global_strided ({cfg.global_strided})"
            )
        return cfg


def _conv(
    x: Any,
    filters: int,
    kernel: int,
    name: str,
    *,
    stride: int = 1,
    dilation: int = 1,
    padding: str = "valid",
    selu: bool = True,
) -> Any:
    """Convolution (+ SELU). LeCun-normal initialisation: what SELU's self-normalisation assumes."""
    layer = DilatedConv2D if dilation > 1 else keras.layers.Conv2D
    x = layer(
        filters,
        kernel,
        stride,
        padding=padding,
        dilation_rate=dilation,
        kernel_initializer="lecun_normal",
        name=name,
    )(x)
    return SELU(name=f"{name}_selu")(x) if selu else x


def build_features(cfg: ExpandNetConfig) -> keras.Model:
    """The int8 part: the three branches and the first fusion layer."""
    frame = keras.Input((None, None, 3), name=FRAME_INPUT)
    view = keras.Input((cfg.global_size, cfg.global_size, 3), name=GLOBAL_INPUT)
    r = cfg.radius
    padded = ReplicatePad(r, name="pad")(frame)
    # Local branch: reads len(local) px around each output; its input is the padded frame cropped to that.
    crop = r - len(cfg.local_channels)
    x = keras.layers.Cropping2D(crop, name="local_crop")(padded) if crop else padded
    for i, ch in enumerate(cfg.local_channels):
        x = _conv(x, ch, 3, f"local{i}")
    local = x
    crop = r - len(cfg.dilated_channels) * cfg.dilation
    x = keras.layers.Cropping2D(crop, name="dilated_crop")(padded) if crop else padded
    last = len(cfg.dilated_channels) - 1
    for i, ch in enumerate(cfg.dilated_channels):
        x = _conv(x, ch, 3, f"dilated{i}", dilation=cfg.dilation, selu=i < last)
    dilated = x
    g = view
    for i in range(cfg.global_strided):
        g = _conv(g, cfg.global_channels, 3, f"global{i}", stride=2, padding="same")
    g = _conv(g, cfg.global_channels, 4, "global_vector", selu=False)  # 4 x 4 -> 1 x 1
    # Fusion layer 1 on [local, dilated, global copied to every pixel], written as its two linear parts.
    cat = keras.layers.Concatenate(name="fuse_cat")([local, dilated])
    h = keras.layers.Conv2D(cfg.fusion_channels, 1, kernel_initializer="lecun_normal", name="fuse0")(cat)
    gv = keras.layers.Conv2D(
        cfg.fusion_channels, 1, use_bias=False, kernel_initializer="lecun_normal", name="fuse0_global"
    )(g)
    h = SELU(name="fuse0_selu")(BroadcastAdd(name="fuse0_add")(h, gv))
    return keras.Model([frame, view], h, name="expandnet_features")


def build_head(cfg: ExpandNetConfig) -> keras.Model:
    """The float part: 1x1 convolution to three logit offsets, zero-initialised (start = ``bt2408``)."""
    feats = keras.Input((None, None, cfg.fusion_channels), name="features")
    out = keras.layers.Conv2D(3, 1, kernel_initializer="zeros", bias_initializer="zeros", name="fuse1")(feats)
    return keras.Model(feats, out, name="expandnet_head")


@keras.saving.register_keras_serializable(package="expandnet")
class AnchoredSigmoid(keras.layers.Layer):
    """PQ out = ``pq_peak`` * sigmoid(logit(base / ``pq_peak``) + offset): the paper's sigmoid, anchored.

    ``base`` is the PQ code of the BT.2408 placement. The training twin of
    :func:`service.operators.expandnet.anchored_sigmoid` (a test holds the two equal).
    """

    def __init__(self, pq_peak: float = PQ_PEAK, eps: float = LOGIT_EPS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pq_peak = pq_peak
        self.eps = eps

    def call(self, offset: Any, base: Any) -> Any:
        """Anchored sigmoid, NHWC."""
        p = tf.clip_by_value(base / self.pq_peak, self.eps, 1.0 - self.eps)
        return self.pq_peak * tf.sigmoid(tf.math.log(p) - tf.math.log1p(-p) + offset)

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {**super().get_config(), "pq_peak": self.pq_peak, "eps": self.eps}


def build_expandnet(cfg: ExpandNetConfig) -> tuple[keras.Model, keras.Model, keras.Model]:
    """(training model [frame, global view, base PQ] -> PQ, features, head) sharing weights."""
    features = build_features(cfg)
    head = build_head(cfg)
    frame = keras.Input((None, None, 3), name=FRAME_INPUT)
    view = keras.Input((cfg.global_size, cfg.global_size, 3), name=GLOBAL_INPUT)
    base = keras.Input((None, None, 3), name="base")
    out = AnchoredSigmoid(float(nits_to_pq(cfg.peak_nits)), name="anchor")(
        head(features([frame, view])), base
    )
    return keras.Model([frame, view, base], out, name="expandnet"), features, head


def count_macs(cfg: ExpandNetConfig, height: int, width: int) -> int:
    """Multiply-accumulates of every convolution for one frame (what dominates the cost)."""
    per_pixel = 0
    c_in = 3
    for ch in cfg.local_channels:
        per_pixel += 9 * c_in * ch
        c_in = ch
    c_in = 3
    for ch in cfg.dilated_channels:
        per_pixel += 9 * c_in * ch
        c_in = ch
    per_pixel += (cfg.local_channels[-1] + cfg.dilated_channels[-1]) * cfg.fusion_channels
    per_pixel += cfg.fusion_channels * 3
    side, c_in, glob = cfg.global_size, 3, 0
    for _ in range(cfg.global_strided):
        side //= 2
        glob += side * side * 9 * c_in * cfg.global_channels
        c_in = cfg.global_channels
    glob += 16 * cfg.global_channels**2 + cfg.global_channels * cfg.fusion_channels
    return per_pixel * height * width + glob
