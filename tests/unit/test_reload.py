"""`make dev`'s reload: which programs a changed file concerns, and what is done about it."""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from devtools import reload
from devtools.dev import DevPlan
from pubsub_supervisor import registry
from pubsub_supervisor.supervision.fatal_listener import DEV_RELOAD_ENV

SERVICES = {spec.program for spec in registry.SERVICES}
ALL = {"web", "web_worker", *SERVICES}
RUNNING = dict.fromkeys(ALL, "RUNNING")


def programs(path: str, env_file: str | None = None) -> set[str]:
    return set(reload.programs_for(PurePosixPath(path), env_file))


@pytest.mark.parametrize("spec", registry.SERVICES, ids=lambda s: s.name)
def test_a_services_package_restarts_that_service_only(spec: registry.ServiceSpec) -> None:
    assert programs(f"services/{spec.name}/handler.py") == {spec.program}
    assert programs(f"services/{spec.name}/sub/module.py") == {spec.program}


def test_the_programs_follow_the_registry() -> None:
    assert set(reload.ALL_PROGRAMS) == ALL
    assert set(reload.SERVICE_PROGRAMS) == SERVICES


def test_the_web_restarts_the_web_and_its_worker() -> None:
    assert programs("web/api.py") == {"web", "web_worker"}
    assert programs("web/__init__.py") == {"web", "web_worker"}


@pytest.mark.parametrize(
    "path",
    [
        "pubsub_supervisor/runtime/consumer.py",
        "pubsub_supervisor/settings.py",
        "services/order_service.py",
        "services/__main__.py",
    ],
)
def test_the_shared_foundation_restarts_every_program(path: str) -> None:
    assert programs(path) == ALL


@pytest.mark.parametrize(
    "path",
    [
        "web/templates/order.html",
        "web/static/dashboard.js",
        "services/email/__pycache__/handler.cpython-313.pyc",
        "tests/unit/test_x.py",
        "README.md",
        "var/log/web.log",
    ],
)
def test_templates_static_files_and_other_files_restart_nothing(path: str) -> None:
    assert programs(path) == set()


def test_the_env_file_restarts_every_program() -> None:
    assert programs(".env", env_file=".env") == ALL
    assert programs(".env") == set()


def test_a_running_web_gets_hup_and_a_service_a_restart() -> None:
    decision = reload.decide(["web/api.py", "services/email/handler.py"], RUNNING)

    assert decision.hup == {"web": "web/api.py changed"}
    assert decision.restart == {
        "web_worker": "web/api.py changed",
        "email_service": "services/email/handler.py changed",
    }
    assert decision.start == {}


def test_the_reason_names_the_first_file() -> None:
    decision = reload.decide(["services/email/b.py", "services/email/a.py"], RUNNING)

    assert decision.restart == {"email_service": "services/email/a.py changed"}


def test_a_fatal_program_is_started_on_any_save_a_stopped_one_left_alone() -> None:
    states = RUNNING | {"inventory_service": "FATAL", "analytics_service": "STOPPED"}

    decision = reload.decide(["services/email/handler.py"], states)

    assert decision.start == {
        "inventory_service": "it was FATAL and a file was saved",
    }
    assert decision.restart == {"email_service": "services/email/handler.py changed"}
    assert "analytics_service" not in decision.restart | decision.start


def test_a_web_that_is_down_is_started_not_signalled() -> None:
    decision = reload.decide(["web/api.py"], RUNNING | {"web": "EXITED"})

    assert decision.hup == {}
    assert decision.start == {"web": "web/api.py changed"}


def test_a_program_in_backoff_is_restarted_when_its_code_changed() -> None:
    decision = reload.decide(
        ["services/inventory/handler.py"], RUNNING | {"inventory_service": "BACKOFF"}
    )

    assert decision.restart == {"inventory_service": "services/inventory/handler.py changed"}


def test_nothing_is_done_for_files_no_program_runs() -> None:
    decision = reload.decide(["README.md"], RUNNING | {"web": "FATAL"})

    assert not decision


def test_listeners_are_never_touched() -> None:
    states = RUNNING | {"log_forwarder": "EXITED", "fatal_exit": "FATAL"}

    decision = reload.decide(["pubsub_supervisor/settings.py"], states)

    assert {"log_forwarder", "fatal_exit"}.isdisjoint(
        decision.hup | decision.restart | decision.start
    )


class FakeSupervisor:
    """Records calls; a stopped program is STOPPED on the next look."""

    def __init__(self, states: dict[str, str]) -> None:
        self.state = dict(states)
        self.calls: list[tuple[str, ...]] = []

    def getAllProcessInfo(self) -> list[dict[str, Any]]:
        return [{"name": n, "statename": s} for n, s in self.state.items()]

    def stopProcess(self, name: str, wait: bool) -> bool:
        self.calls.append(("stop", name))
        self.state[name] = "STOPPED"
        return True

    def startProcess(self, name: str, wait: bool) -> bool:
        self.calls.append(("start", name))
        self.state[name] = "STARTING"
        return True

    def signalProcess(self, name: str, signal: str) -> bool:
        self.calls.append(("signal", name, signal))
        return True


def test_apply_signals_stops_all_then_starts_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rpc = FakeSupervisor(RUNNING | {"analytics_service": "FATAL"})
    decision = reload.decide(["web/api.py", "services/email/handler.py"], rpc.state)

    with caplog.at_level(logging.INFO, logger="devtools.dev"):
        reload.apply(decision, rpc)

    assert rpc.calls == [
        ("signal", "web", "HUP"),
        ("stop", "email_service"),
        ("stop", "web_worker"),
        ("start", "email_service"),
        ("start", "web_worker"),
        ("start", "analytics_service"),
    ]
    assert "restarting email_service: services/email/handler.py changed" in caplog.text
    assert "web reloads its workers (HUP): web/api.py changed" in caplog.text
    assert "starting analytics_service: it was FATAL" in caplog.text


def test_the_reloader_maps_absolute_paths_and_warns_about_the_conf(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rpc = FakeSupervisor(dict(RUNNING))
    reloader = reload.Reloader(tmp_path, tmp_path / "supervisor.sock", tmp_path / ".env")

    with caplog.at_level(logging.INFO, logger="devtools.dev"):
        reloader.handle(
            [str(tmp_path / "services/inventory/handler.py"), str(tmp_path / "supervisord.conf")],
            rpc,
        )
        reloader.handle(["/elsewhere/services/email/handler.py"], rpc)

    assert rpc.calls == [("stop", "inventory_service"), ("start", "inventory_service")]
    assert "supervisord.conf changed" in caplog.text


def test_an_env_file_outside_the_project_restarts_every_program(tmp_path: Path) -> None:
    rpc = FakeSupervisor(dict(RUNNING))
    env_file = tmp_path / "elsewhere.env"
    reloader = reload.Reloader(tmp_path / "project", tmp_path / "s.sock", env_file)

    reloader.handle([str(env_file)], rpc)

    assert {call[1] for call in rpc.calls} == ALL


def test_the_reloader_watches_the_packages_and_an_existing_env_file(tmp_path: Path) -> None:
    for name in ("web", "services", "pubsub_supervisor"):
        (tmp_path / name).mkdir()
    reloader = reload.Reloader(tmp_path, tmp_path / "s.sock", tmp_path / ".env")
    assert reloader.paths() == [tmp_path / n for n in ("pubsub_supervisor", "services", "web")]

    (tmp_path / ".env").write_text("LOG_LEVEL=INFO\n")
    assert reloader.paths()[-1] == tmp_path / ".env"


def test_dev_tells_the_listener_and_the_web_when_it_reloads(tmp_path: Path) -> None:
    conf = tmp_path / "supervisord.conf"
    on = DevPlan.resolve(tmp_path, conf, {"ENV_FILE": ""}).supervisor_env({})
    off = DevPlan.resolve(tmp_path, conf, {"ENV_FILE": ""}, reload=False).supervisor_env({})

    assert on[DEV_RELOAD_ENV] == "1"
    assert on["WEB_TEMPLATES_AUTO_RELOAD"] == "true"
    assert DEV_RELOAD_ENV not in off
    assert "WEB_TEMPLATES_AUTO_RELOAD" not in off
