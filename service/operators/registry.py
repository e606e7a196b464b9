"""Name -> operator lookup. The learned ``mqn`` operator registers itself lazily (its runtime is heavier)."""

from collections.abc import Callable
from importlib import import_module

from service.operators.base import Operator, OperatorInfo
from service.operators.classical import BT2408, BT2446A, InverseReinhard

_CLASSICAL: dict[str, type[Operator]] = {cls.info.name: cls for cls in (BT2408, BT2446A, InverseReinhard)}
_LAZY: dict[str, str] = {"mqn": "service.operators.mqn:MQN"}


def _load(name: str) -> type[Operator]:
    if name in _CLASSICAL:
        return _CLASSICAL[name]
    if name in _LAZY:
        module, attr = _LAZY[name].split(":")
        cls: type[Operator] = getattr(import_module(module), attr)
        return cls
    raise KeyError(name)


def available_operators() -> list[OperatorInfo]:
    """Every operator that can be created here (a lazy one only if its module imports)."""
    infos = [cls.info for cls in _CLASSICAL.values()]
    for name in _LAZY:
        try:
            infos.append(_load(name).info)
        except ImportError:
            continue
    return infos


def create_operator(name: str, **params: float | str) -> Operator:
    """Instantiate operator ``name`` with keyword parameters (``peak_nits`` and the operator's own).

    Raises
    ------
    ValueError
        For an unknown name, unknown parameters, or values out of range.
    """
    try:
        cls = _load(name)
    except KeyError:
        names = [info.name for info in available_operators()]
        raise ValueError(f"operator '{name}' is not known; expected one of {names}") from None
    known = {spec.name for spec in cls.info.params}
    unknown = set(params) - known
    if unknown:
        raise ValueError(f"operator '{name}' does not take {sorted(unknown)}; it takes {sorted(known)}")
    factory: Callable[..., Operator] = cls
    return factory(**params)
