import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from clients import AsyncStream, Stream, StreamClosedError, StreamDrop, StreamOptions, StreamResult


def frames(n: int, height: int = 24, width: int = 32) -> list[npt.NDArray[np.uint8]]:
    ramp = np.linspace(0, 255, width, dtype=np.float32).astype(np.uint8)
    out = []
    for i in range(n):
        frame = np.empty((height, width, 3), np.uint8)
        frame[...] = ramp[None, :, None]
        frame[..., 2] = 8 * i
        out.append(frame)
    return out


def test_lossless_stream_answers_every_frame_in_order(server: Any) -> None:
    options = StreamOptions(32, 24, output="rgb48", mode="lossless", credits=2)
    with Stream.connect(server.url, options) as stream:
        assert stream.ready.result_bytes == 32 * 24 * 6
        events = list(stream.run(frames(20)))
        window = stream.window
    assert [e.seq for e in events if isinstance(e, StreamResult)] == list(range(20))
    first = events[0]
    assert isinstance(first, StreamResult)
    pixels = first.pixels()
    assert pixels.shape == (24, 32, 3) and pixels.dtype == np.uint16
    # Brighter SDR input gives larger PQ codes (a monotonic ITM curve).
    assert pixels[0, -1, 0] > pixels[0, 0, 0]
    assert 0 < first.server_s < first.latency_s
    assert (window.results, window.drops, window.outstanding) == (20, 0, 2)


def test_server_never_exceeds_the_grant(server: Any) -> None:
    # One credit: the window allows 1 + max_pending frames unanswered; the client must not be sent a
    # result it has no credit for (CreditWindow.on_result raises if so).
    with Stream.connect(server.url, StreamOptions(32, 24, mode="lossless", credits=1)) as stream:
        peak = 0
        for _ in stream.run(frames(12)):
            peak = max(peak, stream.window.unanswered)
        assert stream.window.results == 12
        assert peak <= 1 + stream.ready.max_pending


def test_paced_live_stream_gets_a_result_or_drop_per_frame(server: Any) -> None:
    options = StreamOptions(32, 24, output="rgb10a2", mode="live", credits=1)
    with Stream.connect(server.url, options) as stream:
        events = list(stream.run(frames(30), fps=200.0))
    seqs = sorted(e.seq for e in events)
    assert seqs == list(range(30))
    results = [e for e in events if isinstance(e, StreamResult)]
    drops = [e for e in events if not isinstance(e, StreamResult)]
    assert results and all(isinstance(e, StreamDrop) and e.reason == "stale" for e in drops)
    assert [r.seq for r in results] == sorted(r.seq for r in results)


def test_async_stream_with_async_frame_source(server: Any) -> None:
    async def source() -> AsyncIterator[npt.NDArray[np.uint8]]:
        for frame in frames(10):
            await asyncio.sleep(0)
            yield frame

    async def scenario() -> list[int]:
        options = StreamOptions(32, 24, mode="lossless", credits=3)
        async with await AsyncStream.connect(server.url, options) as stream:
            return [event.seq async for event in stream.run(source())]

    assert asyncio.run(scenario()) == list(range(10))


def test_async_sender_error_is_reported(server: Any) -> None:
    async def scenario() -> None:
        async with await AsyncStream.connect(server.url, StreamOptions(32, 24)) as stream:
            async for _ in stream.run([np.zeros((24, 32, 4), np.uint8)]):
                pass

    with pytest.raises(Exception, match="H x W x 3"):
        asyncio.run(scenario())


def test_refusals_raise_stream_closed(server_factory: Any) -> None:
    live = server_factory(api_keys=("k",), max_width=64)
    with pytest.raises(StreamClosedError) as info:
        Stream.connect(live.url, StreamOptions(32, 24))
    assert (info.value.code, info.value.reason) == (1008, "unauthorized")
    with pytest.raises(StreamClosedError) as info:
        Stream.connect(live.url, StreamOptions(128, 24), api_key="k")
    assert info.value.code == 1008 and "exceeds the limit" in info.value.reason
    with Stream.connect(live.url, StreamOptions(32, 24), api_key="k") as stream:
        assert len(list(stream.run(frames(2)))) == 2


def test_video_file_frames_stream_through(server: Any, clip: Any) -> None:
    from clients import VideoFrames

    source = VideoFrames.open(clip, limit=8)
    assert (source.width, source.height, source.fps) == (64, 48, 25.0)
    options = StreamOptions(source.width, source.height, colour="bt709", credits=2)
    with Stream.connect(server.url, options) as stream:
        results = [e for e in stream.run(source) if isinstance(e, StreamResult)]
    assert [r.seq for r in results] == list(range(8))
    assert results[0].pixels().shape == (48, 64, 3)
