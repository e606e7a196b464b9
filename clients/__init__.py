"""Python clients of the itmstream service: REST jobs and stills, and the WebSocket frame stream."""

from clients.errors import (
    APIError,
    ClientError,
    JobFailedError,
    OverloadedError,
    StreamClosedError,
    WaitTimeoutError,
)
from clients.http import AsyncClient, Client
from clients.models import Job, JobOptions, JobPage, JobProgress, JobState, Operator
from clients.protocol import Ready, StreamDrop, StreamEvent, StreamOptions, StreamResult, unpack_rgb10a2
from clients.stream import AsyncStream, Stream, stream_url
from clients.video import VideoFrames

__all__ = [
    "APIError",
    "AsyncClient",
    "AsyncStream",
    "Client",
    "ClientError",
    "Job",
    "JobFailedError",
    "JobOptions",
    "JobPage",
    "JobProgress",
    "JobState",
    "Operator",
    "OverloadedError",
    "Ready",
    "Stream",
    "StreamClosedError",
    "StreamDrop",
    "StreamEvent",
    "StreamOptions",
    "StreamResult",
    "VideoFrames",
    "WaitTimeoutError",
    "stream_url",
    "unpack_rgb10a2",
]
