"""The reference text's section 2.2 ServiceEntry (``resolution: DNS``, no endpoints) must not break
the mesh: what istiod sends for it has to be config every proxy accepts.

Found by applying the snippet to a running mesh: its STRICT_DNS cluster's load assignment (the
hostname as the endpoint address) also went out over EDS, every sidecar NACKed the whole EDS
response (EDS carries IP endpoints, as in Envoy), and proxy-status showed EDS STALE everywhere, so
no endpoint change reached any proxy any more. The test compiles the translator's output with the
proxy's own configuration compiler, the check the proxy makes before it ACKs.
"""

from __future__ import annotations

import re

from cp_helpers import pod
from shared_files import SEED_FILE

from meshpilot.api import load_objects
from meshpilot.controlplane.registry import Registry, Snapshot, proxy_from_pod
from meshpilot.controlplane.translate import generate
from meshpilot.proxy.config import Snapshot as ProxySnapshot
from meshpilot.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE

HOST = "productcatalog.prod.svc.cluster.local"
CLUSTER = f"outbound|80||{HOST}"


def section_2_2_service_entry() -> dict:
    text = SEED_FILE.read_text(encoding="utf-8")
    section = re.search(r"^### 2\.2 .*?(?=^### |^## )", text, re.S | re.M)
    assert section
    (block,) = re.findall(r"```yaml\n(.*?)```", section.group(0), re.S)
    (se,) = load_objects(block, "seed-2.2.yaml")
    se["metadata"]["namespace"] = "production"  # what `kubectl apply -n production` does
    return se


def test_dns_service_entry_without_endpoints_is_inline_only_and_the_proxy_accepts_the_config() -> None:
    se = section_2_2_service_entry()
    assert (se["spec"]["resolution"], se["spec"].get("endpoints")) == ("DNS", None)
    client = pod("client-1", "production", "127.1.1.20", {"app": "client"}, [8080])
    config = generate(Registry(Snapshot(pods=[client], service_entries=[se])), proxy_from_pod(client))

    (c,) = [c for c in config.clusters if c["name"] == CLUSTER]
    assert c["type"] == "STRICT_DNS"
    assert c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["address"] == HOST
    assert CLUSTER not in {e["cluster_name"] for e in config.endpoints}  # inline only, as Istio

    resources = {
        CLUSTER_TYPE: list(config.clusters),
        ENDPOINT_TYPE: list(config.endpoints),
        LISTENER_TYPE: list(config.listeners),
        ROUTE_TYPE: list(config.routes),
    }
    compiled = ProxySnapshot.build(resources, {t: "1" for t in resources})  # raises ConfigError on a NACK
    assert CLUSTER in compiled.clusters
