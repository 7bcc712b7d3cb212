import sys

import pytest

from edgecls.train import allocator


@pytest.fixture
def execve(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator.os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: "libtcmalloc_minimal.so.4")
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    monkeypatch.setattr(allocator.sys, "orig_argv", [sys.executable, "/venv/bin/edgecls", "train", "lenet5"])
    monkeypatch.delenv("EDGECLS_ALLOCATOR", raising=False)
    return calls


def test_training_restarts_itself_once_under_tcmalloc_keeping_other_preloads(execve, monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "libother.so")
    allocator.reexec_under_tcmalloc()
    ((path, argv, env),) = execve
    assert path == sys.executable and argv[1:] == ["/venv/bin/edgecls", "train", "lenet5"]
    assert env["LD_PRELOAD"] == "libtcmalloc_minimal.so.4:libother.so"


@pytest.mark.parametrize("env", [{"LD_PRELOAD": "/usr/lib/libtcmalloc_minimal.so.4"}, {"EDGECLS_ALLOCATOR": "system"}])
def test_no_restart_when_already_under_tcmalloc_or_asked_not_to(execve, monkeypatch, env):
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    allocator.reexec_under_tcmalloc()
    assert execve == []


def test_no_restart_without_tcmalloc(execve, monkeypatch):
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: None)
    allocator.reexec_under_tcmalloc()
    assert execve == [] and allocator.allocator_in_use() == "system"
