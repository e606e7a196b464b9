"""Train MQN from scratch on CPU: ``python -m models.train --config models/mqn/configs/default.json``.

Resumable: a ``tf.train.CheckpointManager`` under ``models/checkpoints/<run>/`` keeps model, optimizer and
step; rerunning the same command continues. Logs (JSON lines + text) go to ``models/logs/<run>/``. The
run stops at ``steps`` or after ``max_minutes`` of wall time, whichever comes first, always saving.
"""

import argparse
import json
import logging
import os
import queue
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from models.mqn.data import (
    DEFAULT_DATA_DIR,
    DEFAULT_VAL_SCENES,
    REPO_ROOT,
    SceneBank,
    SynthesisConfig,
    batches,
    downscale,
    fixed_samples,
    read_manifest,
    split_scenes,
)

log = logging.getLogger("models.mqn.train")


@dataclass
class TrainConfig:
    """Everything a run depends on; stored as ``config.json`` next to its checkpoints."""

    run: str = "mqn"
    data_dir: str | None = None
    val_scenes: tuple[str, ...] = DEFAULT_VAL_SCENES
    crop: int = 384
    """Side of the square full-resolution views the curves are sliced at and the loss is computed on."""
    net_sizes: tuple[int, ...] = (96, 128, 192)
    """Network input sides (multiples of 32), one per batch: 2-4x below the view, as frames at run time."""
    batch_size: int = 8
    steps: int = 20000
    max_minutes: float = 75.0
    lr: float = 1e-3
    lr_min: float = 2e-5
    warmup_steps: int = 200
    val_every: int = 500
    val_per_scene: int = 4
    val_size: int = 384
    val_net: int = 128
    log_every: int = 50
    seed: int = 0
    threads: int = 2
    prefetch: int = 6
    model: dict[str, Any] = field(default_factory=dict)
    synthesis: dict[str, Any] = field(default_factory=dict)
    loss: dict[str, float] = field(default_factory=dict)
    init_from: str | None = None
    """Warm start (fresh runs only): an earlier run's checkpoint folder; its ``best.weights.h5`` is loaded
    into every layer of this model with the same name and weight shapes (the others keep their
    initialisation). How a new head part is trained on top of a backbone that already learned."""
    checkpoint_root: str = "models/checkpoints"
    log_root: str = "models/logs"

    @classmethod
    def load(cls, path: Path, overrides: dict[str, Any] | None = None) -> "TrainConfig":
        """Read a JSON config (unknown keys are an error, so typos do not silently fall back)."""
        raw = json.loads(path.read_text())
        raw.update(overrides or {})
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(
                f"config keys {sorted(unknown)} are not known; expected a subset of {sorted(known)}"
            )
        for key in ("val_scenes", "net_sizes"):
            if key in raw:
                raw[key] = tuple(raw[key])
        return cls(**raw)

    def resolve(self, rel: str) -> Path:
        """Paths in configs are relative to the repository root."""
        p = Path(rel)
        return p if p.is_absolute() else REPO_ROOT / p

    @property
    def data_path(self) -> Path:
        """Scene directory (default ``<repo>/../shared/data/hdr``)."""
        return self.resolve(self.data_dir) if self.data_dir else DEFAULT_DATA_DIR


def _prefetch(gen: Any, depth: int) -> "queue.Queue[Any]":
    """Run the NumPy synthesis in a daemon thread; it mostly releases the GIL inside NumPy/Pillow."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)

    def work() -> None:
        for item in gen:
            q.put(item)

    threading.Thread(target=work, daemon=True, name="mqn-data").start()
    return q


def pq_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two PQ-coded images (peak 1.0), the training-time health metric."""
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 10.0 * np.log10(1.0 / max(mse, 1e-12))


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) training; returns the final summary that is also written to ``summary.json``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from models.mqn.layers import pq_encode_tf
    from models.mqn.losses import LossWeights, mqn_loss
    from models.mqn.model import MQNConfig, build_mqn

    try:
        tf.config.threading.set_intra_op_parallelism_threads(cfg.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        log.warning("TensorFlow already initialised in this process; keeping its thread settings")
    keras.utils.set_random_seed(cfg.seed)

    ckpt_dir = cfg.resolve(cfg.checkpoint_root) / cfg.run
    log_dir = cfg.resolve(cfg.log_root) / cfg.run
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    (ckpt_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))

    scenes = read_manifest(cfg.data_path)
    train_scenes, val_scenes = split_scenes(scenes, cfg.val_scenes)
    syn = SynthesisConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.synthesis.items()})
    t0 = time.perf_counter()
    train_bank = SceneBank(cfg.data_path, train_scenes)
    val_bank = SceneBank(cfg.data_path, val_scenes)
    val = fixed_samples(val_bank, cfg.val_per_scene, (cfg.val_size, cfg.val_size), syn, seed=12345)
    log.info(
        "scenes: %d train, %d val (%s); loaded in %.1f s",
        len(train_scenes),
        len(val_scenes),
        [s.file for s in val_scenes],
        time.perf_counter() - t0,
    )
    val_net = (cfg.val_net, cfg.val_net)
    val_sdr = np.stack([downscale(s.sdr, val_net) for s in val]).astype(np.float32) / 255.0
    val_linear = np.stack([s.linear for s in val])
    val_base = np.stack([s.base for s in val])
    val_tgt = np.stack([s.target for s in val])
    val_hl = np.stack([s.sdr.max(axis=-1) >= 250 for s in val])
    base_psnr = pq_psnr(val_base, val_tgt)
    base_hl_psnr = pq_psnr(val_base[val_hl], val_tgt[val_hl])

    mcfg = MQNConfig.from_json(cfg.model)
    (ckpt_dir / "model.json").write_text(json.dumps(mcfg.to_json(), indent=2))
    model, _, _ = build_mqn(mcfg)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=cfg.lr / 10,
        decay_steps=max(1, cfg.steps - cfg.warmup_steps),
        alpha=cfg.lr_min / cfg.lr,
        warmup_target=cfg.lr,
        warmup_steps=cfg.warmup_steps,
    )
    optimizer = keras.optimizers.Adam(schedule)
    optimizer.build(model.trainable_variables)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    best_var = tf.Variable(-1.0, dtype=tf.float64, trainable=False)
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step_var, best=best_var)
    manager = tf.train.CheckpointManager(ckpt, str(ckpt_dir / "ckpt"), max_to_keep=2)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).expect_partial()
        log.info("resumed from %s at step %d", manager.latest_checkpoint, int(step_var.numpy()))
    start = int(step_var.numpy())
    if start == 0 and cfg.init_from:
        warm_start(model, cfg.resolve(cfg.init_from))
    weights = LossWeights(**cfg.loss)

    @tf.function(reduce_retracing=True, autograph=False)
    def train_step(sdr: Any, linear: Any, tgt: Any) -> Any:
        with tf.GradientTape() as tape:
            out, knots = model([sdr, linear], training=True)
            total, terms = mqn_loss(tgt, out, knots, linear, weights)
        grads = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return total, terms

    @tf.function(reduce_retracing=True, autograph=False)
    def predict(sdr: Any, linear: Any) -> Any:
        return pq_encode_tf(model([sdr, linear], training=False)[0])

    def validate() -> dict[str, float]:
        preds = np.concatenate(
            [predict(val_sdr[i : i + 8], val_linear[i : i + 8]).numpy() for i in range(0, len(val_sdr), 8)]
        )
        return {
            "val_pq_psnr": pq_psnr(preds, val_tgt),
            "val_pq_l1": float(np.mean(np.abs(preds - val_tgt))),
            "val_highlight_pq_psnr": pq_psnr(preds[val_hl], val_tgt[val_hl]),
            "val_bt2408_pq_psnr": base_psnr,
            "val_bt2408_highlight_pq_psnr": base_hl_psnr,
        }

    # A resumed run continues with a fresh but deterministic stream (seed depends on the start step).
    q = _prefetch(
        batches(
            train_bank,
            cfg.batch_size,
            (cfg.crop, cfg.crop),
            cfg.net_sizes,
            syn,
            cfg.seed + 1_000_003 * start,
        ),
        cfg.prefetch,
    )
    from tqdm import tqdm

    jsonl = (log_dir / "train.jsonl").open("a")
    t_start = time.perf_counter()
    deadline = t_start + cfg.max_minutes * 60.0
    bar = tqdm(
        total=cfg.steps,
        initial=start,
        desc=cfg.run,
        mininterval=10.0,
        file=sys.stderr,
        dynamic_ncols=False,
        ncols=100,
    )
    step = start
    acc: dict[str, float] = {}
    n_acc = 0
    t_last = time.perf_counter()
    wait = 0.0
    stop_reason = "steps"
    while step < cfg.steps:
        if time.perf_counter() > deadline:
            stop_reason = "max_minutes"
            break
        tw = time.perf_counter()
        sdr, linear, tgt = q.get()
        wait += time.perf_counter() - tw
        total, terms = train_step(sdr, linear, tgt)
        step += 1
        step_var.assign(step)
        for k, v in {"loss": total, **terms}.items():
            acc[k] = acc.get(k, 0.0) + float(v)
        n_acc += 1
        bar.update(1)
        if step % cfg.log_every == 0:
            now = time.perf_counter()
            rec = {k: v / n_acc for k, v in acc.items()}
            rec |= {
                "step": step,
                "steps_per_s": n_acc / (now - t_last),
                "data_wait_s": wait,
                "lr": float(schedule(step)),
                "elapsed_min": (now - t_start) / 60.0,
            }
            bar.set_postfix(loss=f"{rec['loss']:.4f}", sps=f"{rec['steps_per_s']:.2f}")
            jsonl.write(json.dumps(rec) + "\n")
            jsonl.flush()
            log.info(
                "step %d loss %.5f l1 %.5f %.2f steps/s (data wait %.1f s)",
                step,
                rec["loss"],
                rec["l1"],
                rec["steps_per_s"],
                wait,
            )
            acc, n_acc, t_last, wait = {}, 0, now, 0.0
        if step % cfg.val_every == 0:
            _checkpoint(step, validate(), model, manager, best_var, ckpt_dir, jsonl)
    bar.close()
    metrics = validate()
    _checkpoint(step, metrics, model, manager, best_var, ckpt_dir, jsonl)
    summary = {
        "run": cfg.run,
        "steps": step,
        "resumed_from": start,
        "stop_reason": stop_reason,
        "wall_minutes_this_session": (time.perf_counter() - t_start) / 60.0,
        "params": int(model.count_params()),
        "best_val_pq_psnr": float(best_var.numpy()),
        **metrics,
    }
    (log_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("done: %s", summary)
    jsonl.close()
    return summary


def warm_start(model: Any, run_dir: Path) -> None:
    """Copy an earlier run's best weights into the layers of ``model`` that match by name and shapes.

    Raises
    ------
    ValueError
        If nothing matches (a wrong folder would otherwise silently train from scratch).
    """
    from models.mqn.model import MQNConfig, build_mqn

    old_cfg = MQNConfig.from_json(json.loads((run_dir / "model.json").read_text()))
    old, _, _ = build_mqn(old_cfg)
    old.load_weights(run_dir / "best.weights.h5")

    def layers(m: Any) -> dict[str, Any]:
        found = {}
        for layer in m.layers:
            found[layer.name] = layer
            if hasattr(layer, "layers"):
                found |= layers(layer)
        return found

    source = layers(old)
    copied, kept = 0, []
    for name, layer in layers(model).items():
        w_new = layer.get_weights()
        w_old = source[name].get_weights() if name in source else None
        if not w_new or hasattr(layer, "layers"):
            continue
        if w_old is not None and [a.shape for a in w_old] == [a.shape for a in w_new]:
            layer.set_weights(w_old)
            copied += 1
        else:
            kept.append(name)
    if not copied:
        raise ValueError(f"no layer of {run_dir} matches this model; refusing to warm start from it")
    log.info("warm start from %s: %d layers copied, new: %s", run_dir, copied, kept)


def _checkpoint(
    step: int, metrics: dict[str, float], model: Any, manager: Any, best_var: Any, ckpt_dir: Path, jsonl: Any
) -> None:
    """Save the resumable checkpoint, ``last.weights.h5`` and (if validation improved) ``best.weights.h5``."""
    improved = bool(metrics["val_pq_psnr"] > float(best_var.numpy()))
    if improved:
        best_var.assign(metrics["val_pq_psnr"])
        model.save_weights(ckpt_dir / "best.weights.h5")
    model.save_weights(ckpt_dir / "last.weights.h5")
    manager.save(checkpoint_number=step)
    jsonl.write(json.dumps({"step": step, **metrics, "best": improved}) + "\n")
    jsonl.flush()
    log.info(
        "step %d val %s%s", step, {k: round(v, 4) for k, v in metrics.items()}, " (best)" if improved else ""
    )


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m models.train", description=__doc__)
    parser.add_argument("--config", type=Path, default=Path(__file__).parent / "configs" / "default.json")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override a config key, e.g. --set max_minutes=5 --set run='\"x\"'",
    )
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    summary = train(TrainConfig.load(args.config, overrides))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
