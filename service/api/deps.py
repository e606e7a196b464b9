"""FastAPI dependencies: the shared state, settings, job manager and auth."""

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from service.api.auth import check_auth
from service.api.state import ServiceState
from service.config import Settings
from service.jobs.manager import JobManager


def get_state(conn: HTTPConnection) -> ServiceState:
    """The app's :class:`ServiceState` (set by the lifespan)."""
    state: ServiceState = conn.app.state.itm
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_settings_dep(state: StateDep) -> Settings:
    """The settings the app was created with (not the environment: tests build apps with their own)."""
    return state.settings


def get_jobs(state: StateDep) -> JobManager:
    """The job manager.

    Raises
    ------
    RuntimeError
        If called before the lifespan started the manager.
    """
    if state.jobs is None:
        raise RuntimeError("job manager not started")
    return state.jobs


def require_auth(conn: HTTPConnection, state: StateDep) -> None:
    """Enforce the bearer key when auth is on.

    Raises
    ------
    UnauthorizedError
        If the key is missing or wrong.
    """
    check_auth(state.settings, conn)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
JobsDep = Annotated[JobManager, Depends(get_jobs)]
AUTH = [Depends(require_auth)]
