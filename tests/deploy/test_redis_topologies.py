"""REDIS_URL names the topology: one server, Sentinel, or
a Cluster; a URL that names none stops the start with a message
naming REDIS_URL and the fix."""

from __future__ import annotations

import pytest

from router.api.app import create_app
from router.runtime.settings import Settings, SettingsError
from router.store.topology import TopologyError, parse


def test_standalone_urls_are_passed_through() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://u:p@h:6380/1", "unix:///run/redis.sock"):
        topo = parse(url)
        assert topo.kind == "standalone" and topo.url == url


def test_sentinel_url_lists_nodes_service_database_and_credentials() -> None:
    topo = parse(
        "rediss+sentinel://router:s%40cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/contacts/2"
        "?ssl_ca_certs=/etc/ca.pem&sentinel_password=sp"
    )
    assert topo.kind == "sentinel" and topo.tls
    assert topo.nodes == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380))
    assert topo.service == "contacts"
    assert topo.options["db"] == 2
    assert topo.options["username"] == "router" and topo.options["password"] == "s@cret"
    assert topo.options["ssl"] is True and topo.options["ssl_ca_certs"] == "/etc/ca.pem"
    # the sentinels' own password goes to them only, never to the data nodes
    assert topo.sentinel_options == {"password": "sp"}
    assert "sentinel_password" not in topo.options


def test_cluster_url_lists_seed_nodes_and_credentials() -> None:
    topo = parse("rediss+cluster://router:pw@10.0.1.1:6380,10.0.1.2?ssl_ca_certs=/etc/ca.pem")
    assert topo.kind == "cluster" and topo.tls
    assert topo.nodes == (("10.0.1.1", 6380), ("10.0.1.2", 6379))
    assert topo.options["username"] == "router" and topo.options["password"] == "pw"
    assert topo.options["ssl"] is True and topo.options["ssl_ca_certs"] == "/etc/ca.pem"


def test_secrets_stay_out_of_the_topologys_repr() -> None:
    topo = parse("redis+sentinel://router:hunter2@h:26379/contacts")
    assert "hunter2" not in repr(topo)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://h:6379", "REDIS_URL must start with one of"),
        ("redis+sentinel://h:26379", "names the service"),
        ("redis+sentinel:///contacts", "lists its nodes"),
        ("redis+sentinel://h:99999/contacts", "is not host:port"),
        ("redis+cluster://h:7000/3", "has no path"),
    ],
)
def test_bad_urls_name_the_setting_and_the_fix(url: str, says: str) -> None:
    with pytest.raises(TopologyError, match=says) as exc:
        parse(url)
    assert "REDIS_URL" in str(exc.value)
    assert isinstance(exc.value, SettingsError)  # `router serve` prints it and exits 2


def test_the_app_refuses_a_url_naming_no_topology() -> None:
    settings = Settings.from_env({}, redis_url="memcached://h:11211")
    with pytest.raises(SettingsError, match="REDIS_URL"):
        create_app(settings)
