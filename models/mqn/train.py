"""Train MQN from scratch on CPU: ``python -m models.train --config models/mqn/configs/default.json``.

Resumable: a ``tf.train.CheckpointManager`` under ``models/checkpoints/<run>/`` keeps model, optimizer and
step; rerunning the same command continues. Logs (JSON lines + text) go to ``models/logs/<run>/``. The
run stops at ``steps`` or after ``max_minutes`` of wall time, whichever comes first, always saving.

The run itself (config, checkpoints, logs, validation metrics, the loop) is the harness's
(:mod:`models.harness`), shared with every learned operator; this module brings MQN's model, loss, batches,
validation inputs and warm start.
"""

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from models.harness.cli import train_main
from models.harness.config import TrainConfig
from models.harness.loop import Batch, Validation, fit, load_data, pq_psnr, start_run
from models.mqn.data import batches, downscale

__all__ = ["TrainConfig", "main", "pq_psnr", "train", "warm_start"]

log = logging.getLogger("models.mqn.train")

VAL_CHUNK = 8
"""Validation views per forward pass, as MQN was always validated (its best weights were chosen so)."""


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) training; returns the final summary that is also written to ``summary.json``."""
    ckpt_dir, _ = start_run(cfg, log)
    import tensorflow as tf

    from models.mqn.layers import pq_encode_tf
    from models.mqn.losses import LossWeights, global_aux_loss, mqn_loss
    from models.mqn.model import MQNConfig, build_mqn

    data = load_data(cfg, log)
    val_net = (cfg.val_net, cfg.val_net)
    val_sdr = np.stack([downscale(s.sdr, val_net) for s in data.val]).astype(np.float32) / 255.0
    val_linear = np.stack([s.linear for s in data.val])
    val = Validation.of(data.val, (val_sdr, val_linear), chunk=VAL_CHUNK)

    mcfg = MQNConfig.from_json(cfg.model)
    if mcfg.cell_stats:  # models.mqn.layers.CellStats averages whole blocks of the full-resolution view
        for size, net in [(cfg.crop, n) for n in cfg.net_sizes] + [(cfg.val_size, cfg.val_net)]:
            if size % (net // mcfg.grid_stride):
                raise ValueError(f"cell_stats: {size} px views are no whole number of {net} px views' cells")
    (ckpt_dir / "model.json").write_text(json.dumps(mcfg.to_json(), indent=2))
    model, _, _ = build_mqn(mcfg)
    weights = LossWeights(**cfg.loss)
    if weights.peak and not mcfg.peak_guide:
        raise ValueError("loss.peak weighs the pixels of the peak curve; this model has none (peak_guide)")

    if weights.global_aux and not mcfg.global_aux:
        raise ValueError("loss.global_aux weighs the global path's auxiliary numbers; this model has none")

    def loss(m: Any, batch: Any) -> Any:
        sdr, linear, tgt = batch
        out, knots, *aux = m([sdr, linear], training=True)
        ratio = mcfg.peak_ratio if mcfg.peak_guide else None
        total, terms = mqn_loss(tgt, out, knots, linear, weights, ratio)
        if aux:
            terms["aux"] = global_aux_loss(aux[0], linear, tgt)
            total = total + weights.global_aux * terms["aux"]
        return total, terms

    @tf.function(reduce_retracing=True, autograph=False)
    def predict_pq(sdr: Any, linear: Any) -> Any:
        return pq_encode_tf(model([sdr, linear], training=False)[0])

    def predict(inputs: Batch) -> np.ndarray:
        return np.asarray(predict_pq(*inputs).numpy())

    def stream(seed: int) -> Iterator[Batch]:
        crop = (cfg.crop, cfg.crop)
        return batches(data.train, cfg.batch_size, crop, cfg.net_sizes, data.synthesis, seed, cfg.wide_share)

    def init() -> None:
        if cfg.init_from:
            warm_start(model, cfg.resolve(cfg.init_from), fresh=cfg.init_fresh)

    return fit(cfg, model, loss, predict, stream, val, log, init=init)


def warm_start(model: Any, source: Path, fresh: tuple[str, ...] = ()) -> None:
    """Copy an earlier run's weights into the layers of ``model`` that match by name and shapes.

    ``source`` is a run's checkpoint folder (its ``best.weights.h5``) or one ``*.weights.h5`` file in it
    (e.g. ``last.weights.h5``, the end of its schedule); the architecture comes from the folder's
    ``model.json``. A shipped float twin (``models/artifacts/mqn_float.weights.h5``) names its architecture
    in the ``mqn_float.model.json`` beside it, so a run can start from what is committed, reproducibly.

    Layers named in ``fresh`` keep their initialisation (``TrainConfig.init_fresh``). A dense layer that
    now reads more inputs (appended, e.g. ``MQNConfig.global_tails``) gets the old kernel and zero rows.
    Curves whose knots refine the old ones (every old knot kept, new ones between) get each new segment's
    slope from the old segment it lies in: the same straight line in PQ, so the same curves.

    Raises
    ------
    ValueError
        If nothing matches (a wrong folder would otherwise silently train from scratch), or a ``fresh``
        name is no layer of ``model`` (a typo would otherwise silently copy the layer).
    """
    from models.mqn.model import MQNConfig, build_mqn

    weights = source if source.is_file() else source / "best.weights.h5"
    twin = weights.with_name(weights.name.removesuffix(".weights.h5") + ".model.json")
    arch = twin if twin.is_file() else weights.parent / "model.json"
    old_cfg = MQNConfig.from_json(json.loads(arch.read_text()))
    old, _, _ = build_mqn(old_cfg)
    old.load_weights(weights)

    def layers(m: Any) -> dict[str, Any]:
        found = {}
        for layer in m.layers:
            found[layer.name] = layer
            if hasattr(layer, "layers"):
                found |= layers(layer)
        return found

    old_layers, new_layers = layers(old), layers(model)
    knots = new_layers.get("knots")
    segments = _segment_map(old_cfg.knots_nits, knots.knots_nits) if knots is not None else None
    unknown = set(fresh) - set(new_layers)
    if unknown:
        raise ValueError(f"init_fresh names {sorted(unknown)}, which are not layers of this model")
    copied, kept, grown, refined = 0, [], [], []
    for name, layer in new_layers.items():
        w_new = layer.get_weights()
        w_old = old_layers[name].get_weights() if name in old_layers and name not in fresh else None
        if not w_new or hasattr(layer, "layers"):
            continue
        if w_old is not None and [a.shape for a in w_old] == [a.shape for a in w_new]:
            layer.set_weights(w_old)
            copied += 1
        elif w_old is not None and _grown_inputs(w_old, w_new):
            layer.set_weights([_zero_padded(w_old[0], w_new[0].shape), *w_old[1:]])
            copied += 1
            grown.append(name)
        elif w_old is not None and segments is not None and name in SEGMENT_LAYERS:
            layer.set_weights([w[..., segments] for w in w_old])
            copied += 1
            refined.append(name)
        else:
            kept.append(name)
    if not copied:
        raise ValueError(f"no layer of {weights} matches this model; refusing to warm start from it")
    log.info(
        "warm start from %s: %d layers copied (inputs grown: %s, knots refined: %s), new: %s",
        weights,
        copied,
        grown,
        refined,
        kept,
    )


SEGMENT_LAYERS = ("head_log_slopes", "head_peak_log_slopes")
"""The head's layers with one output per curve segment (``CurveKnots``' log-slopes)."""


def _segment_map(old: tuple[float, ...], new: tuple[float, ...]) -> np.ndarray | None:
    """For each segment of the ``new`` knots, the ``old`` segment it lies in; None unless ``new`` refines.

    A refinement keeps every ``old`` knot (the first and last among them) and adds new ones in between.
    """
    if tuple(old) == tuple(new) or old[0] != new[0] or old[-1] != new[-1] or not set(old) <= set(new):
        return None
    return np.searchsorted(np.asarray(old), np.asarray(new[:-1]), side="right") - 1


def _grown_inputs(old: list[np.ndarray], new: list[np.ndarray]) -> bool:
    """Whether ``new`` is a dense layer like ``old`` that reads more inputs (appended at the end)."""
    return (
        len(old) == len(new)
        and old[0].ndim == 2
        and old[0].shape[1] == new[0].shape[1]
        and old[0].shape[0] < new[0].shape[0]
        and [a.shape for a in old[1:]] == [a.shape for a in new[1:]]
    )


def _zero_padded(kernel: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``kernel`` with zero rows for the new inputs: the grown layer computes exactly what the old one did."""
    out = np.zeros(shape, kernel.dtype)
    out[: kernel.shape[0]] = kernel
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    return train_main(
        argv,
        prog="python -m models.train",
        description=__doc__,
        default_config=Path(__file__).parent / "configs" / "default.json",
        load=TrainConfig.load,
        train=train,
    )


if __name__ == "__main__":
    raise SystemExit(main())
