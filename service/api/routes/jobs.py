"""File conversion jobs: upload (streamed, probed), status, paging, result download (Range), cancel."""

import asyncio
import datetime as dt
import json
import re
import shutil
from collections.abc import Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import ValidationError

from service.api.deps import AUTH, JobsDep, SettingsDep
from service.api.problems import ConflictError, NotFoundError
from service.api.schemas import Job, JobList, JobOptions, JobProgress, JobState, Problem
from service.api.uploads import Upload, receive_upload
from service.errors import InputError
from service.jobs.store import JobRecord
from service.video.encode import Container

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=AUTH)

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": Problem, "content": {"application/problem+json": {}}}
    for code in (401, 404, 409, 413, 415, 422, 503)
}
_UPLOAD_ERRORS = {**_ERRORS, 507: _ERRORS[503]}
"""An upload can also meet a full disk (507 Insufficient Storage)."""


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def job_out(record: JobRecord, request: Request) -> Job:
    """The API view of a stored job."""
    result_url = (
        str(request.url_for("get_job_result", job_id=record.id).path)
        if record.state is JobState.SUCCEEDED
        else None
    )
    return Job(
        id=record.id,
        state=record.state,
        created_at=_utc(record.created_at),
        updated_at=_utc(record.updated_at),
        filename=record.filename,
        options=record.options,
        progress=JobProgress(
            frames_done=record.frames_done,
            frames_total=record.frames_total,
            fps=record.fps,
            eta_s=record.eta_s,
        ),
        error=record.error,
        result_url=result_url,
        result_bytes=record.result_bytes,
        expires_at=_utc(record.expires_at),
    )


def _options(query: Mapping[str, object], fields: dict[str, str]) -> JobOptions:
    """Options from query parameters and form fields (``options`` JSON or one field per option).

    Raises
    ------
    InputError
        If an option is unknown or invalid.
    """
    merged: dict[str, object] = dict(query)
    raw = fields.pop("options", None)
    try:
        if raw:
            loaded = json.loads(raw)
            if not isinstance(loaded, dict):
                raise InputError("form field 'options' must be a JSON object")
            merged.update(loaded)
        merged.update(fields)
        return JobOptions.model_validate(merged)
    except json.JSONDecodeError as exc:
        raise InputError(f"form field 'options' is not valid JSON: {exc.msg}") from exc
    except RecursionError:  # 64 KiB of "[" parses level by level in the stdlib and overflows the stack
        raise InputError("form field 'options' is JSON nested too deeply; expected a flat object") from None
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InputError(f"invalid job options: {details}") from exc


def _check_encode(options: JobOptions) -> None:
    """Refuse encoder options no conversion can honour, by the encoder's own rules (before a job exists).

    Raises
    ------
    InputError
        If the crf is out of the codec's range, the preset is not one of the codec's, or the container
        cannot hold the codec (422: the options are wrong, whatever the upload holds).
    """
    from service.video.encode import EncodeOptions, check_encode_options

    try:
        encode = EncodeOptions(codec=options.codec, crf=options.crf, preset=options.preset)
        check_encode_options(encode, options.container.muxer)
    except InputError as exc:
        raise InputError(f"invalid job options: {exc}") from exc


@router.post(
    "",
    status_code=HTTPStatus.ACCEPTED,
    response_model=Job,
    responses=_UPLOAD_ERRORS,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "options": {"type": "string", "description": "JobOptions as JSON"},
                        },
                        "required": ["file"],
                    }
                },
            },
            "required": True,
        }
    },
)
async def create_job(
    request: Request,
    response: Response,
    jobs: JobsDep,
    settings: SettingsDep,
    operator: Annotated[str | None, Query()] = None,
    mode: Annotated[str | None, Query()] = None,
    peak_nits: Annotated[float | None, Query()] = None,
    codec: Annotated[str | None, Query()] = None,
    crf: Annotated[int | None, Query()] = None,
    preset: Annotated[str | None, Query()] = None,
    container: Annotated[str | None, Query()] = None,
) -> Job:
    """Upload an SDR video (raw body or multipart ``file``) and queue its conversion to HDR10.

    Options come as query parameters, multipart fields, or a multipart ``options`` JSON field. The body is
    streamed to disk and probed before the job is accepted.

    Raises
    ------
    OverloadedError
        If the job queue is full (503 + Retry-After): checked before the body is read, and again, counting
        concurrent uploads, as the job is created.
    PayloadTooLargeError
        If the upload exceeds ``ITM_UPLOAD_LIMIT_BYTES`` (413).
    InsufficientStorageError
        If the disk fills up while the upload is stored (507).
    InputError
        If the options or the media are unusable (422/415).
    """
    jobs.check_room(settings.job_queue_size)  # refuse before reading the body; queue_slot decides
    given = {
        "operator": operator,
        "mode": mode,
        "peak_nits": peak_nits,
        "codec": codec,
        "crf": crf,
        "preset": preset,
        "container": container,
    }
    query = {k: v for k, v in given.items() if v is not None}
    upload: Upload = await receive_upload(
        request, jobs.tmp_dir, settings.upload_limit_bytes, default_name="upload.mp4"
    )
    try:
        options = _options(query, dict(upload.fields))
        _check_encode(options)
        options = jobs.resolve(options)  # stored and reported as run, not as null "server default"
        await jobs.prober.probe(
            upload.path, upload.filename, settings.max_width, settings.max_height, settings.max_duration_s
        )
        with jobs.queue_slot(settings.job_queue_size):
            job_id, upload_path, result_path = jobs.new_paths(upload.filename, options)
            try:
                await asyncio.to_thread(upload.path.replace, upload_path)
            except BaseException:
                shutil.rmtree(upload_path.parent, ignore_errors=True)  # no job owns the folder
                raise
            record = jobs.create(job_id, upload.filename, options, upload_path, result_path)
    except BaseException:
        upload.discard()
        raise
    response.headers["Location"] = str(request.url_for("get_job", job_id=job_id).path)
    return job_out(record, request)


@router.get("", response_model=JobList, responses=_ERRORS)
async def list_jobs(
    request: Request,
    jobs: JobsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query()] = None,
) -> JobList:
    """Jobs newest first, ``limit`` per page; follow ``next_cursor``.

    Raises
    ------
    InputError
        If the cursor is not one this server issued.
    """
    try:
        records, next_cursor = jobs.store.page(limit, cursor)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    return JobList(items=[job_out(r, request) for r in records], next_cursor=next_cursor)


_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What a job id can look like (ours are 16 hex digits); anything else is refused before any lookup."""


def _shown(text: str) -> str:
    """A client-supplied id as quoted in a message: bounded, so a 4000-character id is not echoed whole."""
    return repr(text if len(text) <= 64 else f"{text[:64]}...")


def _checked_id(job_id: str) -> str:
    """``job_id`` if it has the shape of a job id.

    Raises
    ------
    NotFoundError
        Otherwise (``..``, slashes, NUL, control or non-ASCII characters...): no such job can exist, and the
        id never reaches the store or a file path.
    """
    if _JOB_ID.fullmatch(job_id) is None:
        raise NotFoundError(
            f"job {_shown(job_id)} does not exist: job ids are letters, digits, '-' and '_' only"
        )
    return job_id


def _get(jobs: JobsDep, job_id: str) -> JobRecord:
    record = jobs.get(_checked_id(job_id))
    if record is None:
        raise NotFoundError(f"job '{job_id}' does not exist (or has expired)")
    return record


@router.get("/{job_id}", response_model=Job, responses=_ERRORS)
async def get_job(job_id: str, request: Request, jobs: JobsDep) -> Job:
    """State, progress (frames, fps, ETA) and error of one job.

    Raises
    ------
    NotFoundError
        If there is no such job.
    """
    return job_out(_get(jobs, job_id), request)


@router.get(
    "/{job_id}/result",
    response_class=FileResponse,
    responses={
        **_ERRORS,
        200: {"content": {c.media_type: {} for c in Container}},
        206: {"description": "Partial content (Range)"},
    },
)
async def get_job_result(job_id: str, jobs: JobsDep) -> FileResponse:
    """The HDR10 file, with Content-Disposition and HTTP Range support.

    Raises
    ------
    NotFoundError
        If there is no such job.
    ConflictError
        If the job has not succeeded.
    """
    record = _get(jobs, job_id)
    if record.state is not JobState.SUCCEEDED or not record.result_path.is_file():
        raise ConflictError(f"job '{job_id}' is {record.state.value}; a result exists once it succeeded")
    container = record.options.container
    name = f"{Path(record.filename).stem or 'output'}_hdr10{container.suffix}"
    return FileResponse(record.result_path, media_type=container.media_type, filename=name)


@router.delete("/{job_id}", status_code=HTTPStatus.NO_CONTENT, responses=_ERRORS)
async def delete_job(job_id: str, jobs: JobsDep) -> Response:
    """Cancel the job if queued or running and delete its files.

    A job that was still active stays listed as ``cancelled`` until its TTL; a finished one is removed.

    Raises
    ------
    NotFoundError
        If there is no such job.
    """
    if await jobs.delete(_checked_id(job_id)) is None:
        raise NotFoundError(f"job '{job_id}' does not exist (or has expired)")
    return Response(status_code=HTTPStatus.NO_CONTENT)


@router.api_route(
    "/{job_id}/{rest:path}",
    methods=["GET", "HEAD", "DELETE", "POST", "PUT", "PATCH"],
    include_in_schema=False,
)
async def not_a_job_resource(job_id: str, rest: str) -> Response:
    """Anything deeper than ``/v1/jobs/{id}/result``, e.g. ``..%2F..%2Fetc`` once the server decoded it.

    Raises
    ------
    NotFoundError
        Always, naming the path, instead of a bare "Not Found".
    """
    raise NotFoundError(
        f"{_shown(f'{job_id}/{rest}')} is not a job resource; job URLs are /v1/jobs/{{id}} and "
        "/v1/jobs/{id}/result, with ids of letters, digits, '-' and '_'"
    )
