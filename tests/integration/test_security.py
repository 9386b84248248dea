"""The running stack's control surface is private."""

from __future__ import annotations

import configparser
import os
import stat

import pytest

from tests.support.stack import CONF, SupervisedStack

pytestmark = pytest.mark.integration


def test_supervisord_socket_is_private_to_its_user(stack: SupervisedStack) -> None:
    sock = stack.run_dir / "supervisor.sock"
    info = sock.stat()
    assert stat.S_ISSOCK(info.st_mode)
    # Whoever can connect can stop or restart every program: owner only.
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert info.st_uid == os.getuid()


def test_supervisord_has_no_tcp_control_port() -> None:
    parser = configparser.RawConfigParser(strict=False)
    parser.read(CONF)
    assert "inet_http_server" not in parser.sections()
    assert parser.get("unix_http_server", "chmod") == "0700"
