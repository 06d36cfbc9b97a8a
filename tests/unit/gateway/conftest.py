"""Shared fixtures for the gateway unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.descriptors import Image, load_image
from gateway.testing import ensure_image


@pytest.fixture(scope="session")
def descriptor_image() -> Path:
    return ensure_image()


@pytest.fixture(scope="session")
def image(descriptor_image: Path) -> Image:
    return load_image(descriptor_image)
