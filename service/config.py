"""Service settings, read once from ``ITM_*`` environment variables (pydantic-settings).

Every knob an operator of the service may turn lives here, validated at startup so a bad value fails the
process before it binds a port rather than at the first request. Nothing reads the environment elsewhere.
"""

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PositiveInt, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.colour.scaling import DEFAULT_PEAK_NITS
from service.operators.base import Mode


def _default_workers() -> int:
    """One inference worker per core: each worker runs whole batches, so more only adds contention."""
    return max(1, os.cpu_count() or 1)


class ScaleoutSettings(BaseSettings):
    """Where file conversions run: in-process (the default) or in segments on a Ray cluster.

    Its own class so that ``itmstream convert`` reads exactly these (cheaply: no operator is checked) while
    the service's :class:`Settings` has them too; the names and defaults are written once.
    """

    model_config = SettingsConfigDict(env_prefix="ITM_", frozen=True, extra="ignore")

    ray_address: str | None = Field(
        default=None,
        description="Ray cluster for file conversions: 'host:port' of its GCS, 'ray://host:10001', or 'auto' "
        "(the Ray instance on this machine; if none runs, one is started on loopback, which only a private "
        "network namespace allows). Unset: conversions run in-process.",
    )
    segment_seconds: float = Field(
        default=10.0, gt=0, le=3600, description="Target length of a segment; cuts are at input keyframes."
    )
    segment_cpus: float = Field(
        default=1.0, gt=0, le=64, description="CPUs each segment task declares (and its operator threads)."
    )
    segment_retries: int = Field(
        default=2, ge=0, le=10, description="Times Ray re-runs a segment whose worker process or node died."
    )
    segment_window: int = Field(
        default=0,
        ge=0,
        le=4096,
        description="Segments of one conversion cut and handed to Ray ahead of the oldest one not yet "
        "written (the driver's memory and object-store bound). 0: twice the cluster's task slots.",
    )


class Settings(ScaleoutSettings):
    """Validated, immutable service configuration (env var = ``ITM_`` + upper-case field name)."""

    model_config = SettingsConfigDict(env_prefix="ITM_", frozen=True, extra="ignore")

    host: str = Field(default="127.0.0.1", description="Interface to bind; loopback by default.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port (0 = ephemeral, for tests).")
    data_dir: Path = Field(default=Path("data"), description="Job database, uploads and results live here.")

    workers: int = Field(default_factory=_default_workers, ge=1, le=64, description="Inference threads.")
    max_batch_size: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Frames per inference batch at most. 1 on CPU: two workers with one frame each beat one "
        "worker with two (bench/stream.py: mqn 720p 32.6 vs 23.9 FPS); raise it for accelerators.",
    )
    max_queue_delay_ms: float = Field(
        default=4.0, ge=0.0, le=1000.0, description="Longest wait of the oldest queued frame for batch mates."
    )
    queue_size: int = Field(default=64, ge=1, le=4096, description="Frames waiting for inference before 503.")

    upload_limit_bytes: int = Field(
        default=1 << 30, ge=1, description="Largest accepted upload (video or image)."
    )
    max_width: int = Field(default=3840, ge=16, description="Widest accepted frame, video or stream.")
    max_height: int = Field(default=2160, ge=16, description="Tallest accepted frame, video or stream.")
    max_duration_s: float = Field(default=600.0, gt=0, description="Longest accepted video.")
    job_ttl_s: float = Field(
        default=86400.0, gt=0, description="Uploads and results are deleted this long after."
    )
    job_concurrency: int = Field(
        default=1,
        ge=1,
        le=8,
        description="Conversion jobs at once (each also shares the inference pool with streams).",
    )
    job_isolation: bool = Field(
        default=False,
        description="Convert each job in a child process (a crash fails the job, not the server); "
        "False runs it in-process with its frames on the shared batcher. Not with ray_address, which "
        "converts jobs on Ray instead (refused at start-up).",
    )
    job_queue_size: int = Field(default=32, ge=1, description="Queued jobs before uploads get 503.")

    extra_operators: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Extra operators to register at start-up, comma separated 'package.module:Class' paths "
        "(an Operator subclass; it is served under its info.name). Checked here, registered by create_app. "
        "Listed before default_operator so that one may be the default.",
    )
    default_operator: str = Field(
        default="mqn", description="Operator when a request names none (the bundled learned model)."
    )
    default_mode: Mode = Field(default=Mode.FAST, description="Mode for operators that take one.")
    default_peak_nits: float = Field(
        default=DEFAULT_PEAK_NITS, ge=100.0, le=10000.0, description="Peak in cd/m²."
    )

    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Accepted bearer tokens, comma separated; empty = no auth."
    )
    allow_anonymous: bool = Field(
        default=False,
        description="Serve without api_keys on a non-loopback address. Off, `serve` refuses to start there "
        "with no keys (loopback never needs it); an explicit opt-in, so an exposed port is never open by "
        "accident.",
    )

    max_streams: int = Field(
        default=8, ge=1, le=1024, description="Concurrent WebSocket streams before 1013."
    )
    stream_idle_timeout_s: float = Field(default=30.0, gt=0, description="Close a stream silent this long.")
    stream_max_credits: int = Field(
        default=16, ge=1, le=256, description="Most results a stream may have granted."
    )
    warmup_size: tuple[PositiveInt, PositiveInt] = Field(
        default=(64, 64), description="Height, width of the warm-up frame."
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("api_keys", "extra_operators", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        return value

    @field_validator("extra_operators")
    @classmethod
    def _check_operators(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Check each path imports an operator with a free name; registering them is start-up's job."""
        from service.operators.registry import check_operator_path

        paths: dict[str, str] = {}
        for path in value:
            name = check_operator_path(path).name
            if paths.get(name, path) != path:
                raise ValueError(
                    f"operator path '{path}': name '{name}' is already registered by '{paths[name]}'"
                )
            paths[name] = path
        return value

    @field_validator("default_operator")
    @classmethod
    def _known_operator(cls, value: str, info: ValidationInfo) -> str:
        from service.operators import available_operators
        from service.operators.registry import check_operator_path

        extra = [check_operator_path(path).name for path in info.data.get("extra_operators", ())]
        names = [op.name for op in available_operators()]
        names += [name for name in extra if name not in names]
        if value not in names:
            raise ValueError(f"default_operator '{value}' is not known; expected one of {names}")
        return value

    @model_validator(mode="after")
    def _queue_holds_a_batch(self) -> "Settings":
        if self.queue_size < self.max_batch_size:
            raise ValueError(f"queue_size {self.queue_size} must be >= max_batch_size {self.max_batch_size}")
        return self

    @model_validator(mode="after")
    def _jobs_run_in_one_place(self) -> "Settings":
        # The runner would take the child process and never use Ray: refuse rather than ignore one of them.
        if self.job_isolation and self.ray_address:
            raise ValueError(
                f"ITM_JOB_ISOLATION=true and ITM_RAY_ADDRESS='{self.ray_address}' cannot be combined: a job "
                "converts either in a child process of this server or in segments on the Ray cluster; unset "
                "one of them"
            )
        return self

    @property
    def auth_enabled(self) -> bool:
        """Bearer auth is on exactly when at least one key is configured."""
        return bool(self.api_keys)

    @property
    def max_queue_delay_s(self) -> float:
        """The batching window in seconds."""
        return self.max_queue_delay_ms / 1000.0


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use.

    Raises
    ------
    pydantic.ValidationError
        If an ``ITM_*`` variable has an invalid value.
    """
    return Settings()
