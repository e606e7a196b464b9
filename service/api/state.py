"""Everything the lifespan builds and the routes share, held on ``app.state.itm``."""

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from service.config import Settings
from service.inference.batcher import DynamicBatcher
from service.inference.pool import WorkerPool
from service.metrics import Metrics

if TYPE_CHECKING:
    from service.jobs.manager import JobManager


@dataclass
class ServiceState:
    """Live service objects; ``ready`` flips once every worker has warmed the default operator."""

    settings: Settings
    metrics: Metrics
    pool: WorkerPool
    batcher: DynamicBatcher
    jobs: "JobManager | None" = None
    ready: bool = False
    warmup_error: str | None = None
    shutting_down: asyncio.Event = field(default_factory=asyncio.Event)
    streams: set[asyncio.Task[None]] = field(default_factory=set)
    stills_in_flight: int = 0
    """``POST /v1/images`` requests admitted and not answered yet (see ``routes/images.py``)."""
