"""Inverse tone mapping operators: one interface for classical curves and learned ones (MQN, ExpandNet)."""

from service.operators.base import Mode, Operator, OperatorInfo, ParamSpec
from service.operators.registry import available_operators, create_operator

__all__ = [
    "Mode",
    "Operator",
    "OperatorInfo",
    "ParamSpec",
    "available_operators",
    "create_operator",
]
