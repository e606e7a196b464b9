"""The training loop every learned operator shares: resumable, time-boxed, validated on the same views.

A model brings its Keras model, a loss over one batch, a prediction function (PQ out) and an endless batch
stream; the loop brings everything that makes runs comparable and safe to stop: the same validation views of
the held-out scenes (:func:`load_data`), the same PQ metrics as MQN, cosine learning-rate decay with
warm-up, a ``tf.train.CheckpointManager`` under ``models/checkpoints/<run>/`` (rerunning the same command
resumes), ``best``/``last`` weights, JSON-lines logs under ``models/logs/<run>/``, and a stop at ``steps`` or
``max_minutes``, whichever comes first, always saving. MQN and ExpandNet both train through :func:`fit`.
"""

import json
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.harness.config import TrainConfig
from models.mqn.data import Sample, SceneBank, SynthesisConfig, fixed_samples, read_manifest, split_scenes

VAL_SEED = 12345
"""Seed of the validation views: MQN's, so every model is validated on the very same pixels."""
PREDICT_CHUNK = 4
"""Validation views per forward pass (full-resolution models hold every layer at full size)."""

Batch = tuple[npt.NDArray[np.float32], ...]
LossFn = Callable[[Any, Batch], tuple[Any, dict[str, Any]]]
"""(model, batch) -> (total loss, named terms), TensorFlow tensors, traced into the training step."""
PredictFn = Callable[[Batch], npt.NDArray[np.float32]]
"""Model inputs of a few validation views -> predicted PQ (N x H x W x 3)."""


def pq_psnr(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    """PSNR of two PQ-coded images (peak 1.0), the training-time health metric."""
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 10.0 * float(np.log10(1.0 / max(mse, 1e-12)))


def prefetch(gen: Iterator[Any], depth: int) -> "queue.Queue[Any]":
    """Run the NumPy synthesis in a daemon thread; it mostly releases the GIL inside NumPy/Pillow."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)

    def work() -> None:
        for item in gen:
            q.put(item)

    threading.Thread(target=work, daemon=True, name="train-data").start()
    return q


def checkpoint(
    step: int,
    metrics: dict[str, float],
    model: Any,
    manager: Any,
    best_var: Any,
    ckpt_dir: Path,
    jsonl: Any,
    log: logging.Logger,
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


@dataclass(frozen=True)
class Data:
    """The scenes of one run: a bank of training scenes and the fixed validation views."""

    train: SceneBank
    val: list[Sample]
    synthesis: SynthesisConfig


def synthesis_config(cfg: TrainConfig) -> SynthesisConfig:
    """The run's SDR synthesis settings (JSON lists become the tuples the dataclass holds)."""
    return SynthesisConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.synthesis.items()})


def load_data(cfg: TrainConfig, log: logging.Logger) -> Data:
    """Split the manifest by family (MQN's held-out scenes), decode the scenes, draw the validation views."""
    train_scenes, val_scenes = split_scenes(read_manifest(cfg.data_path), cfg.val_scenes)
    syn = synthesis_config(cfg)
    t0 = time.perf_counter()
    bank = SceneBank(cfg.data_path, train_scenes)
    val_bank = SceneBank(cfg.data_path, val_scenes)
    val = fixed_samples(val_bank, cfg.val_per_scene, (cfg.val_size, cfg.val_size), syn, seed=VAL_SEED)
    log.info(
        "scenes: %d train, %d val (%s); loaded in %.1f s",
        len(train_scenes),
        len(val_scenes),
        [s.file for s in val_scenes],
        time.perf_counter() - t0,
    )
    return Data(bank, val, syn)


@dataclass(frozen=True)
class Validation:
    """Model inputs of the validation views, their targets, and the metrics every model reports."""

    inputs: Batch
    base: npt.NDArray[np.float32]
    target: npt.NDArray[np.float32]
    highlight: npt.NDArray[np.bool_]
    chunk: int = PREDICT_CHUNK
    """Views per forward pass. A model keeps the chunk it was validated with: a different batch can round
    differently, and ``best.weights.h5`` is chosen by these figures."""

    @classmethod
    def of(cls, samples: list[Sample], inputs: Batch, chunk: int = PREDICT_CHUNK) -> "Validation":
        """Targets from the samples; highlights are the pixels the SDR has (nearly) clipped."""
        return cls(
            inputs,
            np.stack([s.base for s in samples]),
            np.stack([s.target for s in samples]),
            np.stack([s.sdr.max(axis=-1) >= 250 for s in samples]),
            chunk,
        )

    def metrics(self, predict: PredictFn) -> dict[str, float]:
        """PQ-PSNR / L1 overall and on highlights, with the ``bt2408`` baseline beside them (MQN's keys)."""
        n = len(self.target)
        preds = np.concatenate(
            [predict(tuple(x[i : i + self.chunk] for x in self.inputs)) for i in range(0, n, self.chunk)]
        )
        hl = self.highlight
        return {
            "val_pq_psnr": pq_psnr(preds, self.target),
            "val_pq_l1": float(np.mean(np.abs(preds - self.target))),
            "val_highlight_pq_psnr": pq_psnr(preds[hl], self.target[hl]),
            "val_bt2408_pq_psnr": pq_psnr(self.base, self.target),
            "val_bt2408_highlight_pq_psnr": pq_psnr(self.base[hl], self.target[hl]),
        }


def start_run(cfg: TrainConfig, log: logging.Logger) -> tuple[Path, Path]:
    """Threads, seed, run folders, file log and ``config.json``: before the model is built (seeded init).

    Returns
    -------
    tuple of Path
        The checkpoint folder and the log folder of the run.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

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
    if not any(getattr(h, "baseFilename", None) == str(log_dir / "train.log") for h in log.handlers):
        handler = logging.FileHandler(log_dir / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    (ckpt_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    return ckpt_dir, log_dir


def lr_schedule(cfg: TrainConfig, scale: float = 1.0) -> Any:
    """Cosine decay from ``lr`` to ``lr_min`` after a linear warm-up from ``lr / 10``, times ``scale``."""
    import keras

    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=scale * cfg.lr / 10,
        decay_steps=max(1, cfg.steps - cfg.warmup_steps),
        alpha=cfg.lr_min / cfg.lr,
        warmup_target=scale * cfg.lr,
        warmup_steps=cfg.warmup_steps,
    )


def optimizer_groups(cfg: TrainConfig, variables: list[Any]) -> list[tuple[float, Any, list[Any]]]:
    """(lr multiplier, Adam, its variables) per multiplier of ``cfg.lr_scale``; the plain rate first.

    A variable belongs to the first ``lr_scale`` prefix its layer name (the first part of its path)
    starts with.

    Raises
    ------
    ValueError
        If a prefix matches no trainable variable: a typo would otherwise silently train at the plain rate.
    """
    import keras

    layers = [var.path.split("/")[0] for var in variables]
    unused = [p for p in cfg.lr_scale if not any(layer.startswith(p) for layer in layers)]
    if unused:
        raise ValueError(f"lr_scale prefixes {unused} match no trainable layer of this model")
    by_scale: dict[float, list[Any]] = {1.0: []}
    for var, layer in zip(variables, layers, strict=True):
        scale = next((m for prefix, m in cfg.lr_scale.items() if layer.startswith(prefix)), 1.0)
        by_scale.setdefault(scale, []).append(var)
    groups = []
    for scale, members in by_scale.items():
        if not members:
            continue
        opt = keras.optimizers.Adam(lr_schedule(cfg, scale))
        opt.build(members)
        groups.append((scale, opt, members))
    return groups


def fit(
    cfg: TrainConfig,
    model: Any,
    loss: LossFn,
    predict: PredictFn,
    stream: Callable[[int], Iterator[Batch]],
    val: Validation,
    log: logging.Logger,
    init: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Train (or resume) ``model`` to ``cfg.steps``; returns the summary also written to ``summary.json``.

    Parameters
    ----------
    stream : callable
        seed -> endless batches. A resumed run continues with a fresh but deterministic stream (the seed
        depends on the step it resumes from), as MQN's does.
    init : callable, optional
        Called once when the run starts fresh (no checkpoint to resume), after the optimizer and the
        checkpoint exist and before the first step: MQN's warm start (``init_from``). A resumed run has
        its weights from the checkpoint, so a warm start then would overwrite what it learned.
    """
    import tensorflow as tf
    from tqdm import tqdm

    ckpt_dir = cfg.resolve(cfg.checkpoint_root) / cfg.run
    log_dir = cfg.resolve(cfg.log_root) / cfg.run
    schedule = lr_schedule(cfg)
    groups = optimizer_groups(cfg, model.trainable_variables)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    best_var = tf.Variable(-1.0, dtype=tf.float64, trainable=False)
    # The first group's optimizer keeps the key "optimizer", so runs without lr_scale resume as before.
    slots = {(f"optimizer_x{scale:g}" if i else "optimizer"): opt for i, (scale, opt, _) in enumerate(groups)}
    ckpt = tf.train.Checkpoint(model=model, step=step_var, best=best_var, **slots)
    manager = tf.train.CheckpointManager(ckpt, str(ckpt_dir / "ckpt"), max_to_keep=2)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).expect_partial()
        log.info("resumed from %s at step %d", manager.latest_checkpoint, int(step_var.numpy()))
    start = int(step_var.numpy())
    if start == 0 and init is not None:
        init()

    @tf.function(reduce_retracing=True, autograph=False)
    def train_step(*batch: Any) -> Any:
        with tf.GradientTape() as tape:
            total, terms = loss(model, batch)
        grads = iter(tape.gradient(total, [v for _, _, variables in groups for v in variables]))
        for _, opt, variables in groups:  # one backward pass, each group stepped at its own rate
            opt.apply_gradients([(next(grads), v) for v in variables])
        return total, terms

    q = prefetch(stream(cfg.seed + 1_000_003 * start), cfg.prefetch)
    jsonl = (log_dir / "train.jsonl").open("a")
    t_start = time.perf_counter()
    deadline = t_start + cfg.max_minutes * 60.0
    bar = tqdm(total=cfg.steps, initial=start, desc=cfg.run, mininterval=10.0, file=sys.stderr, ncols=100)
    step, acc, n_acc, wait, t_last = start, {}, 0, 0.0, time.perf_counter()
    stop_reason = "steps"
    while step < cfg.steps:
        if time.perf_counter() > deadline:
            stop_reason = "max_minutes"
            break
        tw = time.perf_counter()
        batch = q.get()
        wait += time.perf_counter() - tw
        total, terms = train_step(*batch)
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
                "step %d %s %.2f steps/s (data wait %.1f s)",
                step,
                " ".join(f"{k} {v:.5f}" for k, v in rec.items() if k in acc),
                rec["steps_per_s"],
                wait,
            )
            acc, n_acc, t_last, wait = {}, 0, now, 0.0
        if step % cfg.val_every == 0:
            checkpoint(step, val.metrics(predict), model, manager, best_var, ckpt_dir, jsonl, log)
    bar.close()
    metrics = val.metrics(predict)
    checkpoint(step, metrics, model, manager, best_var, ckpt_dir, jsonl, log)
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
