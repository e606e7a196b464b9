"""What the job manager is configured with: one frozen value, built from the settings."""

from dataclasses import dataclass
from pathlib import Path

from service.config import Settings
from service.inference.types import OperatorSpec, resolve_spec
from service.jobs.models import JobOptions
from service.operators import Mode
from service.scaleout.cluster import ScaleoutConfig


@dataclass(frozen=True)
class JobConfig:
    """Where jobs live, how many run at once, how long they are kept, and the defaults options fall back to.

    Every field is required: the values come from :class:`~service.config.Settings` (:meth:`from_settings`),
    so nothing here can disagree with them (``isolate`` is ``ITM_JOB_ISOLATION``).
    """

    data_dir: Path
    concurrency: int
    ttl_s: float
    default_operator: str
    default_mode: Mode
    default_peak: float
    max_width: int
    max_height: int
    isolate: bool
    """Convert each job in a child process instead of on the shared batcher."""
    scaleout: ScaleoutConfig | None
    """Convert each job in segments on this Ray cluster (``ITM_RAY_ADDRESS``); None converts in-process."""

    @classmethod
    def from_settings(cls, settings: Settings) -> "JobConfig":
        """The job part of the service settings."""
        return cls(
            data_dir=settings.data_dir,
            concurrency=settings.job_concurrency,
            ttl_s=settings.job_ttl_s,
            default_operator=settings.default_operator,
            default_mode=settings.default_mode,
            default_peak=settings.default_peak_nits,
            max_width=settings.max_width,
            max_height=settings.max_height,
            isolate=settings.job_isolation,
            scaleout=ScaleoutConfig.from_settings(settings) if settings.ray_address else None,
        )

    @property
    def jobs_dir(self) -> Path:
        """One folder per job: its upload and its result."""
        return self.data_dir / "jobs"

    @property
    def tmp_dir(self) -> Path:
        """Uploads being received (emptied at start-up: no request is in flight then)."""
        return self.data_dir / "tmp"

    def spec_for(self, options: JobOptions) -> tuple[OperatorSpec, float]:
        """The operator spec and peak a job's options resolve to.

        Raises
        ------
        InputError
            If the operator, mode or peak is invalid.
        """
        name = options.operator or self.default_operator
        peak = options.peak_nits or self.default_peak
        return resolve_spec(name, peak, options.mode or self.default_mode), peak
