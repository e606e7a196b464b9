"""The shared harness (models/harness/): what MQN and ExpandNet both rely on, without training anything."""

import inspect
import json
from pathlib import Path

import pytest

from models.harness.config import TrainConfig
from models.mqn.data import REPO_ROOT


@pytest.mark.parametrize("config", sorted((REPO_ROOT / "models" / "mqn" / "configs").glob("*.json")))
def test_every_mqn_config_loads_with_its_keys(config: Path) -> None:
    from models.mqn.train import TrainConfig as MQNTrainConfig

    assert MQNTrainConfig is TrainConfig  # one definition, still importable where it was
    cfg = TrainConfig.load(config)
    assert set(json.loads(config.read_text())) <= set(vars(cfg))


@pytest.mark.parametrize(
    "config", sorted((REPO_ROOT / "models" / "mqn" / "configs" / "soups").glob("*.json"))
)
def test_every_soup_config_averages_runs_the_configs_train(config: Path) -> None:
    """A soup's ingredients are runs some training config in ``configs/`` makes, so the card's chain holds."""
    from models.mqn.soup import soup_settings

    cfg, shares = soup_settings(json.loads(config.read_text()))
    trained = {
        json.loads(p.read_text())["run"] for p in (REPO_ROOT / "models" / "mqn" / "configs").glob("*.json")
    }
    assert cfg["run"] == config.stem and set(shares) <= trained
    assert abs(sum(shares.values()) - 1.0) < 1e-12


def test_mqn_evaluation_keeps_its_names_and_signatures() -> None:
    from models.mqn import evaluate

    assert list(inspect.signature(evaluate.make_cases).parameters) == [
        "data_dir",
        "per_scene",
        "size",
        "seed",
    ]
    assert list(inspect.signature(evaluate.score_case).parameters) == ["out", "case"]
    assert list(inspect.signature(evaluate.methods).parameters) == ["artifacts", "run_dir", "peaks_from"]
    assert list(inspect.signature(evaluate.evaluate).parameters) == ["cases", "ops"]
    assert list(inspect.signature(evaluate.keras_sequence).parameters) == ["backbone", "head"]
    assert list(inspect.signature(evaluate.FloatPredictor).parameters) == ["model", "meta"]


@pytest.mark.parametrize("model", ["mqn", "expandnet", "singlehdr", "region_lstm"])
def test_evaluation_without_scenes_says_skipped(
    model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from models.harness.cli import dispatch

    assert (
        dispatch(
            "evaluate", ["--model", model, "--data-dir", str(tmp_path), "--out", str(tmp_path / "t.json")]
        )
        == 0
    )
    assert capsys.readouterr().out == f"skipped: no scenes at {tmp_path}\n"
    assert not (tmp_path / "t.json").exists()


def test_evaluation_seed_and_count_pick_the_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The card's cases by default; a wider screen (more views per scene, another seed) when asked."""
    from models.harness import evaluation

    asked: list[tuple[int, tuple[int, int], int]] = []

    def make_cases(data_dir: Path, per_scene: int, size: tuple[int, int], seed: int) -> list[dict[str, int]]:
        asked.append((per_scene, size, seed))
        return []

    monkeypatch.setattr(evaluation, "make_cases", make_cases)
    (tmp_path / "MANIFEST.csv").write_text("file,kind,family\n")
    parser = evaluation.evaluation_parser("t", None, tmp_path, tmp_path / "t.json")
    for argv in ([], ["--per-scene", "20", "--seed", "7"]):
        evaluation.run_evaluation(parser.parse_args(["--data-dir", str(tmp_path), *argv]), lambda cases: {})
    assert asked == [(3, (360, 640), 2026), (20, (360, 640), 7)]


def test_write_table_writes_json_and_markdown(tmp_path: Path) -> None:
    from models.harness.results import write_table

    row = {
        "abs_pu21_psnr": 30.0,
        "abs_pq_ssim": 0.9,
        "abs_de_itp": 20.0,
        "shape_pu21_psnr": 31.0,
        "shape_pq_ssim": 0.91,
        "shape_de_itp": 19.0,
        "midtone_ratio": 1.0,
    }
    md = write_table(tmp_path / "sub" / "eval.json", {"bt2408": row}, cases=3, size=(64, 36))
    meta = json.loads((tmp_path / "sub" / "eval.json").read_text())
    assert list(meta) == ["table", "cases", "size", "scenes", "peak_nits", "python", "machine"]
    assert meta["table"] == {"bt2408": row} and meta["size"] == [64, 36] and meta["peak_nits"] == 1000.0
    assert (tmp_path / "sub" / "eval.md").read_text() == md
    assert md.splitlines()[-1] == "| bt2408 | 30.00 | 0.9000 | 20.00 | 31.00 | 0.9100 | 19.00 | 1.000 | nan |"


def test_lr_scale_moves_the_named_layers_that_many_times_faster() -> None:
    """Adam steps by ~lr whatever the gradient is: only a per-layer rate lets a small head travel further."""
    import keras
    import numpy as np

    from models.harness.loop import optimizer_groups

    inputs = keras.Input((4,))
    out = keras.layers.Dense(2, name="head_out")(keras.layers.Dense(3, name="body")(inputs))
    model = keras.Model(inputs, out)
    cfg = TrainConfig(lr=1e-2, lr_min=1e-4, warmup_steps=0, steps=100, lr_scale={"head_": 10.0})
    groups = optimizer_groups(cfg, model.trainable_variables)
    assert [(scale, sorted(v.path for v in members)) for scale, _, members in groups] == [
        (1.0, ["body/bias", "body/kernel"]),
        (10.0, ["head_out/bias", "head_out/kernel"]),
    ]
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    for _, opt, members in groups:
        opt.apply_gradients([(np.ones(v.shape, np.float32), v) for v in members])
    moved = {
        path: float(np.abs(v.numpy() - before[path]).max())
        for path, v in ((v.path, v) for v in model.trainable_variables)
    }
    assert moved["body/kernel"] == pytest.approx(1e-2, rel=1e-3)
    assert moved["head_out/kernel"] == pytest.approx(1e-1, rel=1e-3)

    with pytest.raises(ValueError, match="hed_"):
        optimizer_groups(TrainConfig(lr_scale={"hed_": 10.0}), model.trainable_variables)


def test_highlight_psnr_pools_the_error_so_one_exact_case_cannot_carry_the_mean() -> None:
    """An output that matches one case's clipped pixels exactly (both at the peak) scores ~120 dB on that
    case; averaged per case that lifted 21 cases' mean by 5-8 dB. Pooled, it counts as one zero error."""
    from models.harness.evaluation import aggregate
    from models.mqn.metrics import psnr_of_pu21_mse

    base = {"abs_pu21_psnr": 30.0, "midtone_ratio": 1.0}
    rows = [base | {"highlight_pu21_mse": m} for m in (0.0, 4.0, 8.0)] + [base]
    table = aggregate(rows)
    assert table["highlight_cases"] == 3
    assert table["highlight_pu21_psnr"] == pytest.approx(psnr_of_pu21_mse(4.0))
    per_case_mean = sum(psnr_of_pu21_mse(m) for m in (0.0, 4.0, 8.0)) / 3
    assert per_case_mean - table["highlight_pu21_psnr"] > 30.0  # what the old mean of PSNRs read
