"""Settings read from the environment: a bad value names its variable."""

from __future__ import annotations

import pytest

from router.runtime.settings import Settings, SettingsError


def test_gc_thresholds_default_and_override() -> None:
    base = {"REDIS_URL": "redis://127.0.0.1:6379/0"}
    assert Settings.from_env(base).gc_thresholds == (700, 10, 1000)
    env = {**base, "ROUTER_GC_THRESHOLDS": "700,10,10"}
    assert Settings.from_env(env).gc_thresholds == (700, 10, 10)


@pytest.mark.parametrize("bad", ["700,10", "a,b,c", "0,10,10", "700,-1,10", "1.5,10,10"])
def test_bad_gc_thresholds_name_the_variable(bad: str) -> None:
    env = {"REDIS_URL": "redis://127.0.0.1:6379/0", "ROUTER_GC_THRESHOLDS": bad}
    with pytest.raises(SettingsError, match="ROUTER_GC_THRESHOLDS"):
        Settings.from_env(env)
