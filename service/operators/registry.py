"""Name -> operator lookup. The learned operators load lazily.

The learned ones (``mqn``, ``expandnet``, ``singlehdr``, ``region_lstm``) have a heavier runtime: they are
listed always, imported on first use, and fail with an ``EngineError`` when their model is absent.

Extra operators (``ITM_EXTRA_OPERATORS``, a comma-separated list of ``module:Class`` paths) are checked with
:func:`check_operator_path` when the settings are validated, and registered with :func:`register_operator`
by :func:`service.app.create_app` at start-up (validation has no side effects). A registered operator is
looked up by the ``info.name`` of its class exactly like a built-in one, in every worker thread, and its path
is handed to job child processes (:func:`plugin_paths`) so isolated jobs can load it too. The fault-injection
tests use this to run an operator that raises on chosen frames; deployments can use it for in-house curves.
"""

from collections.abc import Callable, Mapping
from importlib import import_module

from service.operators.base import Operator, OperatorInfo
from service.operators.classical import BT2408, BT2446A, InverseReinhard

_CLASSICAL: dict[str, type[Operator]] = {cls.info.name: cls for cls in (BT2408, BT2446A, InverseReinhard)}
_LAZY: dict[str, str] = {
    "mqn": "service.operators.mqn:MQN",
    "expandnet": "service.operators.expandnet:ExpandNet",
    "singlehdr": "service.operators.singlehdr:SingleHDR",
    "region_lstm": "service.operators.region_lstm:RegionLSTM",
}
_PLUGINS: dict[str, str] = {}
"""Registered extra operators: name -> ``module:Class``."""


def _import(path: str) -> type[Operator]:
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"operator path '{path}' is not of the form 'package.module:Class'")
    try:
        cls = getattr(import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"operator path '{path}' cannot be imported: {exc}") from exc
    if not (
        isinstance(cls, type)
        and issubclass(cls, Operator)
        and isinstance(getattr(cls, "info", None), OperatorInfo)
    ):
        raise ValueError(f"operator path '{path}' does not name an Operator subclass with an OperatorInfo")
    return cls


def _load(name: str) -> type[Operator]:
    if name in _CLASSICAL:
        return _CLASSICAL[name]
    path = _LAZY.get(name) or _PLUGINS.get(name)
    if path is not None:
        module, attr = path.split(":")
        cls: type[Operator] = getattr(import_module(module), attr)
        return cls
    raise KeyError(name)


def check_operator_path(path: str) -> OperatorInfo:
    """The info of the operator class at ``path`` (``package.module:Class``), without registering it.

    Raises
    ------
    ValueError
        If the path does not import, is not an :class:`Operator` with an ``info``, or its name is taken by a
        built-in.
    """
    info = _import(path).info
    if info.name in _CLASSICAL or info.name in _LAZY:
        raise ValueError(f"operator path '{path}': name '{info.name}' is a built-in operator")
    return info


def register_operator(path: str) -> OperatorInfo:
    """Make the operator class at ``path`` (``package.module:Class``) available under its ``info.name``.

    Registering the same path again is a no-op, so an app may be created more than once in a process.

    Raises
    ------
    ValueError
        If the path does not import, is not an :class:`Operator` with an ``info``, or its name is taken by a
        built-in or by another registered path.
    """
    info = check_operator_path(path)
    name = info.name
    if _PLUGINS.get(name, path) != path:
        raise ValueError(f"operator path '{path}': name '{name}' is already registered by '{_PLUGINS[name]}'")
    _PLUGINS[name] = path
    return info


def unregister_operator(name: str) -> None:
    """Forget a registered extra operator (tests; built-ins cannot be removed)."""
    _PLUGINS.pop(name, None)


def plugin_paths() -> Mapping[str, str]:
    """Registered extra operators, name -> path (for child processes, which start with none)."""
    return dict(_PLUGINS)


def available_operators() -> list[OperatorInfo]:
    """Every operator that can be created here (a lazy one only if its module imports)."""
    infos = [cls.info for cls in _CLASSICAL.values()]
    for name in (*_LAZY, *_PLUGINS):
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
