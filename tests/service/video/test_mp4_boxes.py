import shutil
import struct

from service.video.hdr10_metadata import ContentLightLevel, MasteringDisplay
from service.video.mp4_boxes import add_hdr10_boxes, clli_box, mdcv_box, without_hdr10_boxes

from ..conftest import make_clip


def test_box_payloads():
    assert clli_box(ContentLightLevel(1000, 400)) == struct.pack(">I4sHH", 12, b"clli", 1000, 400)
    assert clli_box(ContentLightLevel()) == struct.pack(">I4sHH", 12, b"clli", 0, 0)
    mdcv = mdcv_box(MasteringDisplay())
    assert len(mdcv) == 32 and mdcv[4:8] == b"mdcv"
    assert struct.unpack(">8HII", mdcv[8:]) == (
        *(13250, 34500),  # green first, as in the HEVC SEI
        *(7500, 3000),
        *(34000, 16000),
        *(15635, 16450),
        10_000_000,
        1,
    )


def test_only_the_expected_layout_is_touched(tmp_path):
    # an H.264 track has no HEVC/AV1 sample entry: file left byte-identical
    h264 = make_clip(tmp_path / "a.mp4")
    before = h264.read_bytes()
    assert add_hdr10_boxes(h264, MasteringDisplay(), ContentLightLevel(1, 1)) is False
    assert h264.read_bytes() == before
    # faststart (moov before mdat) would need chunk offsets rewritten: refused
    fast = tmp_path / "fast.mp4"
    if shutil.which("ffmpeg"):
        import subprocess

        subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(h264), "-c", "copy", "-movflags", "+faststart", str(fast)],
            check=True,
        )
        before = fast.read_bytes()
        assert add_hdr10_boxes(fast, MasteringDisplay(), ContentLightLevel(1, 1)) is False
        assert fast.read_bytes() == before


def test_without_hdr10_boxes_turns_them_into_free_boxes_in_place(tmp_path):
    hevc = make_clip(tmp_path / "hevc.mp4", codec="libx265")
    plain = hevc.read_bytes()
    assert without_hdr10_boxes(plain) == plain  # nothing to hide
    assert add_hdr10_boxes(hevc, MasteringDisplay(), ContentLightLevel(1000, 400)) is True
    boxed = hevc.read_bytes()
    hidden = without_hdr10_boxes(boxed)
    assert len(hidden) == len(boxed) and b"mdcv" not in hidden and b"clli" not in hidden
    mdcv, clli = boxed.index(b"mdcv"), boxed.index(b"clli")
    assert hidden[mdcv : mdcv + 4] == hidden[clli : clli + 4] == b"free"
    assert hidden[:mdcv] + hidden[mdcv + 4 : clli] + hidden[clli + 4 :] == (
        boxed[:mdcv] + boxed[mdcv + 4 : clli] + boxed[clli + 4 :]
    )
    hevc.write_bytes(hidden)
    assert add_hdr10_boxes(hevc, MasteringDisplay(), ContentLightLevel(1, 1)) is True  # room for new ones


def test_without_hdr10_boxes_leaves_other_bytes_alone(tmp_path):
    assert without_hdr10_boxes(b"not an mp4 at all") == b"not an mp4 at all"
    h264 = make_clip(tmp_path / "a.mp4").read_bytes()
    assert without_hdr10_boxes(h264) == h264
