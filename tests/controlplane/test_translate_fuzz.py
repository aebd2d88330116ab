"""Whatever Istio config is in the store, the translator answers every proxy with a valid config.

The API validates objects on the way in, but a store written by an older version, a relaxed CRD
or a real cluster can still hold surprises; one bad VirtualService must not cut a proxy off.
"""

from __future__ import annotations

from typing import Any

from cp_helpers import assert_valid, istio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_translate import FRONTEND, snapshot

from meshpilot.controlplane.registry import Registry, proxy_from_pod
from meshpilot.controlplane.translate import generate

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.floats(allow_nan=False, width=32),
    st.sampled_from(
        ["", "productcatalog", "v1", "1s", "bogus", "*", "/a", "RANDOM", "ROUND_ROBIN", "x-user"]
    ),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                [
                    "host",
                    "subset",
                    "number",
                    "port",
                    "weight",
                    "exact",
                    "prefix",
                    "regex",
                    "name",
                    "labels",
                    "simple",
                    "httpHeaderName",
                    "httpCookie",
                    "ttl",
                    "value",
                    "destination",
                    "uri",
                    "headers",
                    "set",
                    "add",
                    "remove",
                    "request",
                    "response",
                    "match",
                    "route",
                ]
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)
vs_specs = st.fixed_dictionaries(
    {"hosts": st.one_of(st.just(["productcatalog"]), st.lists(scalars, max_size=2), json_values)},
    optional={
        "http": st.lists(
            st.dictionaries(
                st.sampled_from(
                    [
                        "match",
                        "route",
                        "redirect",
                        "rewrite",
                        "timeout",
                        "retries",
                        "fault",
                        "mirror",
                        "mirrorPercentage",
                        "headers",
                        "directResponse",
                        "name",
                    ]
                ),
                json_values,
                max_size=4,
            ),
            max_size=3,
        ),
        "exportTo": json_values,
        "gateways": json_values,
    },
)
dr_specs = st.fixed_dictionaries(
    {"host": st.one_of(st.just("productcatalog"), scalars)},
    optional={
        "trafficPolicy": st.dictionaries(
            st.sampled_from(["loadBalancer", "connectionPool", "outlierDetection", "portLevelSettings"]),
            json_values,
            max_size=3,
        ),
        "subsets": json_values,
        "exportTo": json_values,
    },
)


other_specs = st.dictionaries(
    st.sampled_from(
        [
            "hosts",
            "ports",
            "resolution",
            "endpoints",
            "addresses",
            "workloadSelector",
            "egress",
            "outboundTrafficPolicy",
            "location",
            "exportTo",
        ]
    ),
    json_values,
    max_size=5,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vs_specs, dr_specs, other_specs, other_specs)
def test_any_config_gives_every_proxy_a_valid_configuration(
    vs: dict[str, Any], dr: dict[str, Any], se: dict[str, Any], sidecar: dict[str, Any]
) -> None:
    snap = snapshot(
        virtual_services=[istio("VirtualService", "pc", "production", vs, valid=False)],
        destination_rules=[istio("DestinationRule", "pc", "production", dr, valid=False)],
        service_entries=[istio("ServiceEntry", "se", "production", se, valid=False)],
        sidecars=[istio("Sidecar", "default", "other", sidecar, valid=False)],
    )
    config = generate(Registry(snap), proxy_from_pod(FRONTEND))
    assert_valid(config)
    assert any(c["name"].startswith("outbound|8080|") for c in config.clusters)
