"""``GET /v1/operators``: what the server can run, with each operator's parameters."""

from fastapi import APIRouter

from service.api.deps import AUTH
from service.api.schemas import OperatorOut, OperatorParam, Problem
from service.operators import available_operators

router = APIRouter(
    prefix="/v1/operators",
    tags=["operators"],
    dependencies=AUTH,
    responses={401: {"model": Problem, "description": "Missing or wrong bearer key"}},
)


@router.get("", response_model=list[OperatorOut])
async def list_operators() -> list[OperatorOut]:
    """Every available operator (``mqn`` only when its model and runtime are installed)."""
    return [
        OperatorOut(
            name=info.name,
            summary=info.summary,
            params=[
                OperatorParam(
                    name=p.name,
                    default=p.default,
                    help=p.help,
                    minimum=p.minimum,
                    maximum=p.maximum,
                    choices=list(p.choices) if p.choices else None,
                )
                for p in info.params
            ],
        )
        for info in available_operators()
    ]
