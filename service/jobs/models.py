"""Job states and options: plain data shared by the store, the runner and the API schemas."""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from service.operators import Mode
from service.video.encode import Codec, Container


class JobState(StrEnum):
    """Lifecycle of a conversion job; ``succeeded``, ``failed`` and ``cancelled`` are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class JobOptions(BaseModel):
    """How to convert an uploaded video; unset fields take the server defaults.

    A created job stores and reports its options resolved (:meth:`JobManager.resolve`): the operator, peak,
    crf and preset it runs with, and the mode when the operator has modes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    operator: str | None = Field(
        default=None, description="Operator name (GET /v1/operators); default: settings."
    )
    mode: Mode | None = Field(default=None, description="For operators with modes (mqn).")
    peak_nits: float | None = Field(default=None, ge=100.0, le=10000.0, description="Mastering peak, cd/m².")
    codec: Codec = "hevc"
    crf: int | None = Field(default=None, ge=0, le=63, description="Quality; hevc 0-51, av1 0-63.")
    preset: str | None = Field(default=None, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    container: Container = Container.MP4
