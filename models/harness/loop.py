"""The training loop every learned operator shares: resumable, time-boxed, validated on the same views.

A model brings its Keras model, a loss over one batch, a prediction function (PQ out) and an endless batch
stream; the loop brings everything that makes runs comparable and safe to stop: the same validation views of
the held-out scenes (:func:`validation_samples`), the same PQ metrics as MQN, cosine learning-rate decay with
warm-up, a ``tf.train.CheckpointManager`` under ``models/checkpoints/<run>/`` (rerunning the same command
resumes), ``best``/``last`` weights, JSON-lines logs under ``models/logs/<run>/``, and a stop at ``steps`` or
``max_minutes``, whichever comes first, always saving.

``TrainConfig``, the prefetch thread and the checkpoint step are still MQN's (:mod:`models.mqn.train`, which
another run is using as it is); they are generic and should move here, and MQN's own loop onto :func:`fit`.
"""

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.mqn.data import Sample, SceneBank, SynthesisConfig, fixed_samples, read_manifest, split_scenes
from models.mqn.train import TrainConfig, _checkpoint, _prefetch, pq_psnr

VAL_SEED = 12345
"""Seed of the validation views: MQN's, so every model is validated on the very same pixels."""
PREDICT_CHUNK = 4
"""Validation views per forward pass (full-resolution models hold every layer at full size)."""

Batch = tuple[npt.NDArray[np.float32], ...]
LossFn = Callable[[Any, Batch], tuple[Any, dict[str, Any]]]
"""(model, batch) -> (total loss, named terms), TensorFlow tensors, traced into the training step."""
PredictFn = Callable[[Batch], npt.NDArray[np.float32]]
"""Model inputs of a few validation views -> predicted PQ (N x H x W x 3)."""


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

    @classmethod
    def of(cls, samples: list[Sample], inputs: Batch) -> "Validation":
        """Targets from the samples; highlights are the pixels the SDR has (nearly) clipped."""
        return cls(
            inputs,
            np.stack([s.base for s in samples]),
            np.stack([s.target for s in samples]),
            np.stack([s.sdr.max(axis=-1) >= 250 for s in samples]),
        )

    def metrics(self, predict: PredictFn) -> dict[str, float]:
        """PQ-PSNR / L1 overall and on highlights, with the ``bt2408`` baseline beside them (MQN's keys)."""
        n = len(self.target)
        preds = np.concatenate(
            [
                predict(tuple(x[i : i + PREDICT_CHUNK] for x in self.inputs))
                for i in range(0, n, PREDICT_CHUNK)
            ]
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


def fit(
    cfg: TrainConfig,
    model: Any,
    loss: LossFn,
    predict: PredictFn,
    stream: Callable[[int], Iterator[Batch]],
    val: Validation,
    log: logging.Logger,
) -> dict[str, Any]:
    """Train (or resume) ``model`` to ``cfg.steps``; returns the summary also written to ``summary.json``.

    Parameters
    ----------
    stream : callable
        seed -> endless batches. A resumed run continues with a fresh but deterministic stream (the seed
        depends on the step it resumes from), as MQN's does.
    """
    import keras
    import tensorflow as tf
    from tqdm import tqdm

    ckpt_dir = cfg.resolve(cfg.checkpoint_root) / cfg.run
    log_dir = cfg.resolve(cfg.log_root) / cfg.run
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

    @tf.function(reduce_retracing=True, autograph=False)
    def train_step(*batch: Any) -> Any:
        with tf.GradientTape() as tape:
            total, terms = loss(model, batch)
        grads = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return total, terms

    q = _prefetch(stream(cfg.seed + 1_000_003 * start), cfg.prefetch)
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
                "step %d %s (data wait %.1f s)",
                step,
                " ".join(f"{k} {v:.5f}" for k, v in rec.items() if k in acc),
                wait,
            )
            acc, n_acc, t_last, wait = {}, 0, now, 0.0
        if step % cfg.val_every == 0:
            _checkpoint(step, val.metrics(predict), model, manager, best_var, ckpt_dir, jsonl)
    bar.close()
    metrics = val.metrics(predict)
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
