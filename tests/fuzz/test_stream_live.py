"""The WebSocket frame stream fuzzed over a real socket: arbitrary hellos and message sequences.

test_protocol.py checks the parsers; this checks the session that drives them. Whatever a client sends, the
server answers with exactly what docs/PROTOCOL.md §7 allows: ``ready`` for a valid hello, results in ``seq``
order, and in the end a close frame with code 1000 (bye), 1003 (unsupported data) or 1008 (policy) and a
reason. Never 1011 (internal error) and never a dropped connection without a close frame.
"""

import contextlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from clients.protocol import BYE, Ready, credit_message, encode_frame, now_us, parse_result, parse_text
from tests.fuzz.strategies import BAD_HELLO_VALUES, JSON_VALUES, OUTPUTS, U32, U64, json_text
from tests.service.conftest import LiveServer

DOCUMENTED_CLOSES = {1000, 1003, 1008}
OPERATORS = ["bt2408", "bt2446a", "inverse_reinhard"]


@st.composite
def live_hellos(draw: st.DrawFn) -> dict[str, Any]:
    """Valid hellos the fuzz server must accept: raw RGB within its limits and credits, known operators."""
    hello: dict[str, Any] = {
        "type": "hello",
        "width": draw(st.integers(16, 32)),
        "height": draw(st.integers(16, 32)),
        "input": "rgb24",
        "output": draw(st.sampled_from(OUTPUTS)),
    }
    optional = {
        "version": st.just(1),
        "mode": st.sampled_from(["live", "lossless"]),
        "operator": st.sampled_from(OPERATORS),
        "peak_nits": st.floats(203.0, 10000.0),  # inverse_reinhard's 203 cd/m² key must stay below the peak
        "colour": st.sampled_from(["srgb", "bt709"]),
        "credits": st.integers(1, 4),
    }
    for name in draw(st.sets(st.sampled_from(sorted(optional)))):
        hello[name] = draw(optional[name])
    return hello


@dataclass
class Conversation:
    """What the server said: the ready message, results and drops in arrival order, and how it closed."""

    ready: Ready | None = None
    results: list[int] = field(default_factory=list)
    drops: list[int] = field(default_factory=list)
    code: int | None = None
    reason: str = ""


def converse(server: LiveServer, first: str | bytes, then: list[str | bytes]) -> Conversation:
    """Send ``first``, then ``then``; give one credit back per result (as a real client does) until closed."""
    talk = Conversation()
    with connect(f"{server.ws_url}/v1/stream", compression=None, max_size=None, open_timeout=30) as ws:
        try:
            ws.send(first)
            reply = ws.recv(timeout=30)
            assert isinstance(reply, str), "the first answer is text"
            talk.ready = Ready.from_json(parse_text(reply))
            for message in then:
                ws.send(message)
            while True:
                message = ws.recv(timeout=30)
                if isinstance(message, bytes):
                    talk.results.append(parse_result(message, talk.ready, now_us()).seq)
                    # The server may have closed already (bye, last result): results still queued behind
                    # its close frame must be read, so a refused credit is not the end of the conversation.
                    with contextlib.suppress(ConnectionClosed):
                        ws.send(credit_message(1))
                else:
                    event = parse_text(message)
                    assert event["type"] == "drop", event
                    talk.drops.append(event["seq"])
        except ConnectionClosed as exc:
            assert exc.rcvd is not None, "closed without a close frame"
            talk.code, talk.reason = exc.rcvd.code, exc.rcvd.reason
    return talk


def bad_hellos() -> st.SearchStrategy[str | bytes]:
    """A valid hello with one field broken, an unknown field added, or no hello at all."""

    @st.composite
    def one_field_broken(draw: st.DrawFn) -> str:
        hello = draw(live_hellos())
        name = draw(st.sampled_from(sorted(BAD_HELLO_VALUES)))
        hello[name] = draw(BAD_HELLO_VALUES[name])
        return json.dumps(hello)

    unknown = st.builds(
        lambda h, k: json.dumps({**h, k: 1}), live_hellos(), st.sampled_from(["fps", "Width"])
    )
    return one_field_broken() | unknown | JSON_VALUES.map(json_text) | st.binary(max_size=32)


@given(first=live_hellos().map(json.dumps) | bad_hellos())
def test_any_first_message_gets_ready_or_a_close_naming_the_problem(
    fuzz_server: LiveServer, first: str
) -> None:
    talk = converse(fuzz_server, first, [BYE])
    event(f"close {talk.code}")
    if talk.ready is not None:
        hello = json.loads(first)
        assert (talk.ready.width, talk.ready.height, talk.ready.output) == (
            hello["width"],
            hello["height"],
            hello["output"],
        )
        assert talk.code == 1000, talk.reason
    elif isinstance(first, bytes):  # §7: a binary message where the hello is expected is unsupported data
        assert talk.code == 1003 and talk.reason.startswith("expected a JSON hello"), talk
    else:  # every text first message here is JSON, so a bad one breaks the rules of §2
        assert talk.code == 1008 and talk.reason.startswith("hello"), talk


@st.composite
def sessions(draw: st.DrawFn) -> tuple[dict[str, Any], list[str | bytes], int]:
    """A valid hello, then any mix of good and bad messages, then bye; also how many good frames went out."""
    hello = draw(live_hellos())
    size = hello["width"] * hello["height"] * 3
    seq, frames = -1, 0
    messages: list[str | bytes] = []
    kinds = st.sampled_from(["frame"] * 6 + ["bad frame", "credit", "text", "binary"])
    for kind in draw(st.lists(kinds, min_size=1, max_size=10)):
        if kind == "frame":
            seq += draw(st.integers(1, 3))
            messages.append(encode_frame(seq, draw(st.binary(min_size=size, max_size=size)), draw(U64)))
            frames += 1
        elif kind == "bad frame":
            header = struct.pack("<IIQ", draw(U32), draw(st.integers(1, 2**32 - 1)), draw(U64))  # flags != 0
            messages.append(header + draw(st.binary(max_size=size + 4)))
        elif kind == "credit":
            messages.append(json.dumps({"type": "credit", "n": draw(st.integers(-1, 20))}))
        elif kind == "text":
            messages.append(draw(JSON_VALUES.map(json_text) | st.text(max_size=20)))
        else:
            messages.append(draw(st.binary(max_size=20)))
    return hello, [*messages, BYE], frames


@given(session=sessions())
def test_any_message_sequence_ends_with_a_documented_close(
    fuzz_server: LiveServer, session: tuple[dict[str, Any], list[str | bytes], int]
) -> None:
    hello, messages, frames = session
    talk = converse(fuzz_server, json.dumps(hello), messages)
    event(f"close {talk.code}, {len(talk.results)} results")
    assert talk.ready is not None
    assert talk.code in DOCUMENTED_CLOSES and talk.reason, talk
    assert talk.results == sorted(set(talk.results)), "results in seq order, each once"
    if talk.code == 1000:  # no protocol error: every frame got exactly one result or one drop report
        assert sorted(talk.results + talk.drops) == sorted(set(talk.results + talk.drops))
        assert len(talk.results) + len(talk.drops) == frames


@given(hello=live_hellos(), frames=st.integers(1, 10), data=st.data())
def test_a_well_behaved_client_gets_every_frame_answered_in_order(
    fuzz_server: LiveServer, hello: dict[str, Any], frames: int, data: st.DataObject
) -> None:
    """§4-5: every frame gets one result or (live only) one drop report; results in seq order."""
    size = hello["width"] * hello["height"] * 3
    seqs = sorted(data.draw(st.sets(U32, min_size=frames, max_size=frames), label="seqs"))
    messages: list[str | bytes] = [encode_frame(seq, bytes(size), client_ts=seq) for seq in seqs]
    talk = converse(fuzz_server, json.dumps(hello), [*messages, BYE])
    event(f"{len(talk.drops)} drops")
    assert talk.code == 1000, talk
    assert talk.results == sorted(talk.results) and sorted(talk.results + talk.drops) == seqs, (hello, talk)
    if hello.get("mode") == "lossless":
        assert not talk.drops


@pytest.mark.parametrize(
    "text", ["[" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000], ids=["list", "object"]
)
def test_deeply_nested_text_after_hello_closes_1003(fuzz_server: LiveServer, text: str) -> None:
    """json.loads raises RecursionError, not JSONDecodeError, on these (once a dropped connection)."""
    hello = {"type": "hello", "width": 16, "height": 16, "input": "rgb24", "output": "rgb48"}
    talk = converse(fuzz_server, json.dumps(hello), [text])
    assert talk.code == 1003, talk
