"""Fixtures for the MQN tests (skip markers live in each module, so they import without a package)."""

from pathlib import Path

import pytest

from models.mqn.artifacts import ARTIFACTS


@pytest.fixture(scope="session")
def artifacts() -> Path:
    return ARTIFACTS
