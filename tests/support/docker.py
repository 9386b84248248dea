"""What the Docker tiers need from the machine: an engine, compose, and local images."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import NoReturn

import pytest

ENABLE_HINT = "run: bash scripts/docker/prepare.sh (engine, compose and the local images)"

#: The emulator image users get, then the stand-in scripts/docker/prepare.sh builds.
LOCALSTACK_IMAGES = ("localstack/localstack:4.14.0", "pubsub-supervisor/localstack:4.14.0-native")
#: The app image's default base, then the local base image scripts/docker/prepare.sh builds.
BASE_IMAGES = ("python:3.13-slim", "pubsub-supervisor/base:trixie")
#: The scale-out override's database: the image scripts/docker/prepare.sh builds, then upstream's.
POSTGRES_IMAGES = ("pubsub-supervisor/postgres:trixie", "postgres:17")


def unavailable(message: str) -> NoReturn:
    """Skip on a developer's machine; fail in CI, where the Docker tier must run."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI runs the Docker tier: .ci/setup.d prepares it)")
    pytest.skip(f"{message}; to run these tests, {ENABLE_HINT}")


def run_docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the docker client; never raises on a non-zero exit."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@cache
def engine_problem() -> str | None:
    """Why the Docker engine cannot be used, or None when it answers."""
    if shutil.which("docker") is None:
        return "the docker client is not installed"
    try:
        result = run_docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if result.returncode != 0:
        return f"the Docker engine does not answer: {result.stderr.strip()[:200]}"
    return None


def require_docker() -> None:
    """Skip (or fail in CI) unless the Docker engine answers."""
    problem = engine_problem()
    if problem:
        unavailable(problem)


@cache
def compose_command() -> tuple[str, ...]:
    """`docker compose` (v2) when installed, else `docker-compose` (v1); both read the file."""
    require_docker()
    if run_docker("compose", "version").returncode == 0:
        return ("docker", "compose")
    if shutil.which("docker-compose"):
        return ("docker-compose",)
    unavailable("neither `docker compose` nor `docker-compose` is installed")


def require_compose_v2() -> None:
    """Skip (or fail in CI) unless `docker compose` is Compose v2 (`watch` needs it)."""
    if compose_command() != ("docker", "compose"):
        unavailable(
            "`docker compose watch` needs Compose v2, and only Compose v1 is installed "
            "(scripts/docker/engine.sh installs the v2 plugin)"
        )


def checkout_app_image(root: Path) -> str:
    """The app image's default name for a checkout, as `make up` and app-image.sh name it."""
    result = subprocess.run(
        ["bash", "-c", 'source scripts/docker/lib.sh && checkout_app_image "$1"', "-", str(root)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


def image_exists(image: str) -> bool:
    """True when the image is in the local engine (no pulls: there may be no registry)."""
    return run_docker("image", "inspect", image).returncode == 0


def local_image(variable: str, candidates: tuple[str, ...]) -> str:
    """The image named by `variable`, else the first candidate the engine already has."""
    require_docker()
    chosen = os.environ.get(variable)
    for image in (chosen,) if chosen else candidates:
        if image_exists(image):
            return image
    wanted = chosen or " or ".join(candidates)
    unavailable(f"image {wanted} is not in the local engine (set {variable} to one that is)")
