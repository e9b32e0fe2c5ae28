"""Unit tests run without Ray and without the network: any attempt to start or join Ray, or
to download a file (tests that check a download fake the server), fails the test."""

import pytest


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    import ray

    def refuse(*args, **kwargs):
        raise AssertionError("a unit test tried to start Ray")

    monkeypatch.setattr(ray, "init", refuse)
    # as if no Ray were running, even where integration tests ran first in this process
    monkeypatch.setattr(ray, "is_initialized", lambda: False)


@pytest.fixture(autouse=True)
def in_a_scratch_folder(tmp_path, monkeypatch):
    """A CLI run without --out writes under ./runs: keep that out of the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    import urllib.request

    def refuse(*args, **kwargs):
        raise AssertionError("a unit test tried to download a file")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
