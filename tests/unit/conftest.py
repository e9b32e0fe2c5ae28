"""Unit tests run without Ray: any attempt to start or join it fails the test."""

import pytest


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    import ray

    def refuse(*args, **kwargs):
        raise AssertionError("a unit test tried to start Ray")

    monkeypatch.setattr(ray, "init", refuse)
