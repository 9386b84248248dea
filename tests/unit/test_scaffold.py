"""`pubsub new-service NAME`: the four files of README.md's "Add your own service"."""

from __future__ import annotations

import configparser
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pubsub_ops import cli, scaffold

ROOT = Path(__file__).resolve().parents[2]
RUFF = ROOT / ".venv" / "bin" / "ruff"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The two files the scaffold edits, and the folders it writes to."""
    for path in (scaffold.REGISTRY, scaffold.CONF):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, tmp_path / path)
    (tmp_path / "services").mkdir()
    (tmp_path / "pubsub_supervisor/migrations/versions").mkdir(parents=True)
    return tmp_path


def load_registry(path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The edited registry as a module of its own (dataclasses look it up in sys.modules)."""
    spec = importlib.util.spec_from_file_location("scaffolded_registry", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_it_writes_the_handler_and_migration_and_registers_the_service(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = scaffold.new_service(project, "gift_wrap")
    assert written.created == (
        Path("services/gift_wrap.py"),
        Path("pubsub_supervisor/migrations/versions/gift_wrap/gift_wrap0001_baseline.py"),
    )
    assert written.edited == (scaffold.REGISTRY, scaffold.CONF)
    registry = load_registry(project / scaffold.REGISTRY, monkeypatch)
    spec = registry.get("gift_wrap")
    assert spec.handler == "services.gift_wrap:GiftWrapService.build"
    assert [s.name for s in registry.SERVICES][-1] == "gift_wrap"
    conf = configparser.RawConfigParser(inline_comment_prefixes=(" ;",))
    conf.read(project / scaffold.CONF)
    program = conf["program:gift_wrap_service"]
    assert program["command"] == "%(ENV_PUBSUB_VENV)s/bin/python -m services gift_wrap"
    assert program["stopwaitsecs"] == "15"
    # The event listeners stay last; every other program is still there.
    sections = conf.sections()
    assert sections.index("program:gift_wrap_service") < sections.index(
        "eventlistener:log_forwarder"
    )
    assert {s for s in sections if s.startswith("program:")} >= {
        "program:web",
        "program:analytics_service",
    }
    handler = (project / written.created[0]).read_text()
    assert "class GiftWrapService:" in handler
    assert 'migrate(engine, "gift_wrap")' in handler
    migration = (project / written.created[1]).read_text()
    assert 'revision = "gift_wrap0001"' in migration
    assert "op.create_table(idempotency.TABLE, *idempotency.columns())" in migration


def test_the_files_it_writes_pass_the_projects_linter(project: Path) -> None:
    written = scaffold.new_service(project, "returns")
    files = [str(project / p) for p in written.created]
    config = ["--config", str(ROOT / "pyproject.toml"), "--no-cache"]
    for command in (["check", *config, *files], ["format", "--check", *config, *files]):
        result = subprocess.run(
            [str(RUFF), *command], capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Gift", "lower-case"),
        ("gift-wrap", "lower-case"),
        ("class", "lower-case"),
        ("inventory", "already in"),
        ("web", "taken by the web"),
    ],
)
def test_it_refuses_a_name_it_cannot_add(project: Path, name: str, message: str) -> None:
    before = (project / scaffold.REGISTRY).read_text()
    with pytest.raises((scaffold.ScaffoldError, ValueError), match=message):
        scaffold.new_service(project, name)
    assert (project / scaffold.REGISTRY).read_text() == before
    assert not (project / "services" / f"{name}.py").exists()


def test_it_refuses_to_overwrite_a_file(project: Path) -> None:
    (project / "services" / "returns.py").write_text("# mine\n")
    with pytest.raises(scaffold.ScaffoldError, match="exists already"):
        scaffold.new_service(project, "returns")
    assert (project / "services" / "returns.py").read_text() == "# mine\n"


def test_the_command_outside_a_project_says_where_to_run_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["new-service", "returns", "--root", str(tmp_path)]) == cli.EXIT_FAILED
    assert "run from the project's root or pass --root" in capsys.readouterr().err


def test_the_command_writes_the_files(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["new-service", "returns", "--root", str(project)]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "created services/returns.py" in out
    assert "added returns to supervisord.conf" in out
    assert (project / "services" / "returns.py").exists()
