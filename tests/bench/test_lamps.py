"""``python -m bench.lamps``: the lamp level it prints, and a clear refusal without the shared clips."""

from pathlib import Path

import numpy as np
import pytest

from bench.lamps import lamp_level, main


def test_lamp_level_is_the_p999_of_bt2020_luminance() -> None:
    nits = np.zeros((100, 100, 3), np.float32)
    nits.reshape(-1, 3)[:20] = 600.0  # 0.2 % of the pixels: above the 99.9th percentile
    assert lamp_level(nits) == pytest.approx(600.0, rel=1e-3)


def test_without_the_clips_it_says_which_are_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["--video", str(tmp_path)])
    assert "aliasing_ferris-ref.mp4 not found" in capsys.readouterr().err
