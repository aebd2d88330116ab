"""The process runtime on real processes: environment, addresses, logs, probes, restarts with
back-off, re-adoption after a daemon restart, and stopping every process."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from _localcluster import (
    APP,
    alive,
    app_container,
    http_get,
    http_get_retry,
    local_cluster,
    make_info,
    pids_of,
    pod_manifest,
    processes_running,
    service_manifest,
    wait_for,
)

from meshpilot.cluster import runtime
from meshpilot.cluster.controllers import ControllerManager
from meshpilot.cluster.objects import PODS
from meshpilot.cluster.runtime import backoff_delay, expand, pod_metrics, resolve_argv, service_env
from meshpilot.cluster.state import ClusterInfo
from meshpilot.store import Store


@pytest.fixture(autouse=True)
def small_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runtime.BACKOFF_ENV, "0.3")


# ----------------------------------------------------------------- pure rules


def test_dollar_paren_expansion_follows_kubernetes() -> None:
    env = {"A": "x", "B": "y"}
    assert expand("$(A)-$(B)", env) == "x-y"
    assert expand("$(MISSING)", env) == "$(MISSING)"
    assert expand("$$(A)", env) == "$(A)"
    assert expand("cost: $5", env) == "cost: $5"


def test_argv0_python_and_meshpilot_use_the_daemons_interpreter() -> None:
    import sys

    assert resolve_argv(["python", "-c", "1"]) == [sys.executable, "-c", "1"]
    assert resolve_argv(["python3", "x.py"]) == [sys.executable, "x.py"]
    assert resolve_argv(["meshpilot", "version"]) == [sys.executable, "-m", "meshpilot", "version"]
    assert resolve_argv(["/bin/true"]) == ["/bin/true"]


def test_backoff_doubles_from_the_base_up_to_thirty_times_it() -> None:
    assert [backoff_delay(n, 10) for n in range(8)] == [0, 10, 20, 40, 80, 160, 300, 300]


def test_service_variables_are_kubernetes_docker_links() -> None:
    svc = {
        "metadata": {"name": "product-catalog"},
        "spec": {"clusterIP": "127.9.128.4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    }
    env = service_env([svc])
    assert env["PRODUCT_CATALOG_SERVICE_HOST"] == "127.9.128.4"
    assert env["PRODUCT_CATALOG_SERVICE_PORT"] == "80"
    assert env["PRODUCT_CATALOG_SERVICE_PORT_HTTP"] == "80"
    assert env["PRODUCT_CATALOG_PORT"] == "tcp://127.9.128.4:80"
    assert env["PRODUCT_CATALOG_PORT_80_TCP_ADDR"] == "127.9.128.4"
    headless = {"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}
    assert service_env([headless]) == {}


def test_pod_addresses_are_next_fit_and_never_reused_while_in_use() -> None:
    from meshpilot.cluster import ipam

    pods = ipam.pod_range(7)
    first, second = pods.allocate(), pods.allocate()
    assert (first, second) == ("127.7.1.1", "127.7.1.2")
    pods.release(first)
    assert pods.allocate() == "127.7.1.3", "a released address is not handed out again at once"
    small = ipam.IPRange("127.7.1.254", "127.7.2.2")  # .255 and .0 are skipped
    got = [small.allocate() for _ in range(3)]
    assert got == ["127.7.1.254", "127.7.2.1", "127.7.2.2"]
    with pytest.raises(ipam.RangeExhausted):
        small.allocate()
    small.release("127.7.2.1")
    assert small.allocate() == "127.7.2.1"
    assert ipam.service_range(7).allocate() == "127.7.128.1"


def test_probe_thresholds_and_timing() -> None:
    from meshpilot.cluster.probes import ProbeTracker

    tracker = ProbeTracker(
        {"initialDelaySeconds": 5, "periodSeconds": 2, "failureThreshold": 2, "successThreshold": 2},
        started_at=100.0,
    )
    assert not tracker.due(104.9) and tracker.due(105.0)
    tracker.begin(105.0)
    assert not tracker.due(106.0), "one probe at a time"
    assert tracker.record(True) is None, "one success of two needed"
    assert tracker.due(107.0)
    tracker.begin(107.0)
    assert tracker.record(True) is True
    tracker.begin(109.0)
    assert tracker.record(False) is True, "one failure is within the threshold"
    tracker.begin(111.0)
    assert tracker.record(False) is False


# ----------------------------------------------------------------- real processes


async def test_environment_address_workdir_and_log_file(tmp_path: Path) -> None:
    async with local_cluster(tmp_path) as c:
        c.apply(service_manifest("catalog", {"app": "nothing"}))
        c.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "cfg", "namespace": "default"},
                "data": {"colour": "blue"},
            }
        )
        secret = base64.b64encode(b"s3cret").decode()
        c.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "sec", "namespace": "default"},
                "data": {"pw": secret},
            }
        )
        workdir = tmp_path / "work"
        workdir.mkdir()
        env = [
            {"name": "GREETING", "value": "hello"},
            {"name": "MESSAGE", "value": "$(GREETING) from $(POD_NAME)"},
            {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "MY_SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "MY_TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
            {"name": "COLOUR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "colour"}}},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
        ]
        c.apply(
            pod_manifest(
                "envpod",
                [app_container(env=env, workingDir=str(workdir))],
                labels={"app": "envpod", "tier": "gold"},
            )
        )
        pod = await wait_for(
            lambda: c.pod("envpod")["status"].get("phase") == "Running" and c.pod("envpod"), what="Running"
        )
        ip = pod["status"]["podIP"]
        a, b, third, _ = ip.split(".")
        assert (a, b) == ("127", str(c.info.index)) and 1 <= int(third) <= 127
        status, body = await http_get_retry(ip, 8080, "/env")
        assert status == 200
        seen = json.loads(body)
        assert seen["MESSAGE"] == "hello from envpod"
        assert seen["MY_NAME"] == "envpod" and seen["MY_NS"] == "default" and seen["MY_IP"] == ip
        assert seen["MY_SA"] == "default" and seen["MY_TIER"] == "gold"
        assert seen["COLOUR"] == "blue" and seen["PASSWORD"] == "s3cret"
        assert seen["POD_IP"] == ip and seen["PORT"] == "8080" and seen["POD_NAME"] == "envpod"
        assert seen["KUBERNETES_SERVICE_HOST"] == c.info.api_host
        assert seen["CATALOG_SERVICE_PORT"] == "80" and seen["CATALOG_SERVICE_HOST"].startswith(
            f"127.{c.info.index}."
        )
        assert Path(seen["MESHPILOT_TOKEN_FILE"]).read_text() == c.info.token
        _, cwd = await http_get(ip, 8080, "/cwd")
        assert json.loads(cwd)["cwd"] == str(workdir)
        _, peer = await http_get(ip, 8080, "/peer")
        log_file = c.info.pods_dir / "default" / "envpod" / "app.log"
        text = await wait_for(
            lambda: "listening" in log_file.read_text() and log_file.read_text(), what="log line"
        )
        assert "starting pod=envpod" in text
        cid = pod["status"]["containerStatuses"][0]["containerID"]
        pid = pids_of(pod)[0]
        assert cid == f"meshpilot://{pid}-{psutil.Process(pid).create_time():.2f}"
        assert os.getsid(pid) == pid, "each container runs in its own session"
        metrics = pod_metrics(c.store, c.info)
        mine = [m for m in metrics if m["metadata"]["name"] == "envpod"]
        assert mine and mine[0]["containers"][0]["name"] == "app"
        assert mine[0]["containers"][0]["usage"]["memory"].endswith("Ki")
        assert int(mine[0]["containers"][0]["usage"]["memory"][:-2]) > 1000
        assert peer  # answered


async def test_missing_configmap_waits_then_starts(tmp_path: Path) -> None:
    async with local_cluster(tmp_path) as c:
        env = [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "later", "key": "x"}}}]
        c.apply(pod_manifest("waits", [app_container(env=env)]))

        def waiting_reason() -> str:
            statuses = c.pod("waits")["status"].get("containerStatuses") or [{}]
            return str(statuses[0].get("state", {}).get("waiting", {}).get("reason", ""))

        await wait_for(lambda: waiting_reason() == "CreateContainerConfigError", what="config error")
        assert (
            'configmap "later" not found'
            in c.pod("waits")["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        )
        c.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "later", "namespace": "default"},
                "data": {"x": "1"},
            }
        )
        await wait_for(lambda: c.pod("waits")["status"]["phase"] == "Running", what="Running")


async def test_probes_readiness_liveness_and_tcp_from_the_pod_ip(tmp_path: Path) -> None:
    ready_file = tmp_path / "ready"
    sick_file = tmp_path / "sick"
    async with local_cluster(tmp_path) as c:
        container = app_container(
            args=["--ready-file", str(ready_file), "--unhealthy-file", str(sick_file)],
            readinessProbe={
                "httpGet": {"path": "/ready", "port": "http"},
                "periodSeconds": 1,
                "failureThreshold": 1,
            },
            livenessProbe={
                "httpGet": {"path": "/healthz", "port": 8080},
                "periodSeconds": 1,
                "failureThreshold": 2,
            },
            startupProbe={"tcpSocket": {"port": "http"}, "periodSeconds": 1, "failureThreshold": 30},
        )
        exec_container = {
            "name": "side",
            "image": "test/side",
            "command": ["python", "-c", "import time; time.sleep(600)"],
            "readinessProbe": {
                "exec": {
                    "command": ["python", "-c", "import os,sys; sys.exit(0 if os.environ['POD_NAME'] else 1)"]
                },
                "periodSeconds": 1,
            },
        }
        c.apply(pod_manifest("probed", [container, exec_container], terminationGracePeriodSeconds=2))

        def statuses() -> dict[str, dict]:
            return {s["name"]: s for s in c.pod("probed")["status"].get("containerStatuses") or []}

        await wait_for(lambda: statuses().get("app", {}).get("started"), what="startup probe")
        await wait_for(lambda: statuses().get("side", {}).get("ready"), what="exec readiness")
        assert not statuses()["app"]["ready"]
        ready = next(c_ for c_ in c.pod("probed")["status"]["conditions"] if c_["type"] == "Ready")
        assert ready["status"] == "False"
        ready_file.write_text("ok")
        ip = c.pod("probed")["status"]["podIP"]
        log_file = c.info.pods_dir / "default" / "probed" / "app.log"
        await wait_for(
            lambda: f"ready probe from {ip} agent=kube-probe/" in log_file.read_text(),
            what="probe from the pod's IP",
        )
        await wait_for(lambda: statuses()["app"]["ready"], what="readiness")
        await wait_for(
            lambda: any(
                x["type"] == "Ready" and x["status"] == "True"
                for x in c.pod("probed")["status"]["conditions"]
            ),
            what="pod Ready",
        )
        first_pid = pids_of(c.pod("probed"))[0]
        sick_file.write_text("x")
        await wait_for(lambda: statuses()["app"]["restartCount"] >= 1, timeout=20, what="liveness restart")
        sick_file.unlink()
        await wait_for(lambda: statuses()["app"]["ready"], timeout=20, what="ready again")
        assert pids_of(c.pod("probed"))[0] != first_pid
        assert not alive(first_pid)


async def test_crash_loop_backs_off_exponentially(tmp_path: Path) -> None:
    async with local_cluster(tmp_path) as c:
        c.apply(pod_manifest("crashy", [app_container(args=["--exit-after", "0", "--exit-code", "3"])]))
        seen_backoff = False
        restarts_at: dict[int, float] = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status = (c.pod("crashy").get("status", {}).get("containerStatuses") or [{}])[0]
            count = int(status.get("restartCount", 0))
            restarts_at.setdefault(count, time.monotonic())
            if status.get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff":
                seen_backoff = True
                assert status["lastState"]["terminated"]["exitCode"] == 3
                assert status["lastState"]["terminated"]["reason"] == "Error"
            if count >= 4:
                break
            await asyncio.sleep(0.02)
        assert seen_backoff
        assert max(restarts_at) >= 4
        gaps = [restarts_at[i + 1] - restarts_at[i] for i in range(1, 4)]
        # base 0.3 s: gaps after the first restart are about 0.3, 0.6, 1.2 s (plus start time)
        assert gaps[2] > gaps[0] * 1.5, gaps
        assert c.pod("crashy")["status"]["phase"] == "Running"


async def test_a_restarted_container_logs_only_its_own_run_and_keeps_the_previous_one(
    tmp_path: Path,
) -> None:
    """kubectl logs shows the current instance, logs --previous the one before (the kubelet's rule)."""
    async with local_cluster(tmp_path) as c:
        c.apply(pod_manifest("relog", [app_container(args=["--exit-after", "0", "--exit-code", "3"])]))
        pod_dir = c.info.pods_dir / "default" / "relog"

        def settled_after_restarts() -> bool:
            status = (c.pod("relog").get("status", {}).get("containerStatuses") or [{}])[0]
            waiting = status.get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
            return int(status.get("restartCount", 0)) >= 2 and waiting

        await wait_for(settled_after_restarts, timeout=20, what="two restarts, backing off")
        current = (pod_dir / "app.log").read_text()
        previous = (pod_dir / "app.previous.log").read_text()
        for text in (current, previous):
            assert text.count("starting pod=relog") == 1, text
            assert text.count("exiting with 3") == 1, text


async def test_restart_policies_never_and_onfailure(tmp_path: Path) -> None:
    async with local_cluster(tmp_path) as c:
        c.apply(
            pod_manifest(
                "never",
                [app_container(args=["--exit-after", "0", "--exit-code", "2"])],
                restartPolicy="Never",
            )
        )
        c.apply(
            pod_manifest(
                "done",
                [app_container(args=["--exit-after", "0", "--exit-code", "0"])],
                restartPolicy="OnFailure",
            )
        )
        await wait_for(lambda: c.pod("never")["status"].get("phase") == "Failed", what="Failed")
        await wait_for(lambda: c.pod("done")["status"].get("phase") == "Succeeded", what="Succeeded")
        status = c.pod("never")["status"]["containerStatuses"][0]
        assert status["restartCount"] == 0 and status["state"]["terminated"]["exitCode"] == 2
        assert c.pod("done")["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


async def test_restarted_daemon_adopts_live_processes_and_restarts_dead_ones(tmp_path: Path) -> None:
    info = make_info(tmp_path)
    store = Store(tmp_path / "store.db")
    try:
        async with local_cluster(tmp_path, info=info, store=store) as c:
            c.apply(pod_manifest("keep", [app_container()]))
            c.apply(pod_manifest("dies", [app_container()]))
            await wait_for(lambda: all(pids_of(c.pod(n)) for n in ("keep", "dies")), what="both started")
            keep_pid = pids_of(c.pod("keep"))[0]
            dies_pid = pids_of(c.pod("dies"))[0]
            keep_cid = c.pod("keep")["status"]["containerStatuses"][0]["containerID"]
            # the daemon "crashes": controllers stop, processes stay
            await c.manager.stop(stop_pods=False)
            assert alive(keep_pid) and alive(dies_pid)
            os.killpg(dies_pid, signal.SIGKILL)
            await wait_for(lambda: not alive(dies_pid), what="killed")
            c.manager = ControllerManager(store, info)
            await c.manager.start()
            await wait_for(
                lambda: c.pod("dies")["status"]["containerStatuses"][0]["restartCount"] == 1, what="restart"
            )
            await wait_for(
                lambda: c.pod("dies")["status"]["containerStatuses"][0].get("state", {}).get("running"),
                what="running",
            )
            keep = c.pod("keep")["status"]["containerStatuses"][0]
            assert keep["containerID"] == keep_cid and keep["restartCount"] == 0
            assert alive(keep_pid)
            dies = c.pod("dies")["status"]["containerStatuses"][0]
            assert dies["lastState"]["terminated"]["exitCode"] == 137
            # exactly one process per pod: nothing duplicated
            for name in ("keep", "dies"):
                running = [
                    p
                    for p in processes_running(APP)
                    if psutil.Process(p)
                    .environ()
                    .get("MESHPILOT_TOKEN_FILE", "")
                    .startswith(str(info.pods_dir / "default" / name))
                ]
                assert len(running) == 1, (name, running)
            pids = [pids_of(c.pod(n))[0] for n in ("keep", "dies")]
        # local_cluster's exit stops every pod
        for pid in pids:
            assert not alive(pid)
    finally:
        store.close()


async def test_stop_with_pods_kills_every_process(tmp_path: Path) -> None:
    async with local_cluster(tmp_path) as c:
        # one container ignores SIGTERM: it must still be gone after the grace period
        stubborn = {
            "name": "stubborn",
            "image": "x",
            "command": [
                "python",
                "-c",
                "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)",
            ],
        }
        c.apply(pod_manifest("a", [app_container()]))
        c.apply(pod_manifest("b", [stubborn], terminationGracePeriodSeconds=1))
        await wait_for(lambda: pids_of(c.pod("a")) and pids_of(c.pod("b")), what="started")
        pids = pids_of(c.pod("a")) + pids_of(c.pod("b"))
        children = [ch.pid for pid in pids for ch in psutil.Process(pid).children(recursive=True)]
        started = time.monotonic()
        await c.manager.stop(stop_pods=True)
        assert time.monotonic() - started < 8
        for pid in pids + children:
            assert not alive(pid), pid
        c.manager = ControllerManager(c.store, c.info)
        await c.manager.start()


def test_pod_metrics_forgets_gone_containers_also_when_asked_about_one_namespace(tmp_path: Path) -> None:
    stale = "meshpilot://1-1.00"  # a container instance that no pod records any more
    runtime._CPU_SAMPLES[stale] = (0.0, 0.0)
    store = Store(None)
    try:
        assert pod_metrics(store, make_info(tmp_path), namespace="default") == []
        assert stale not in runtime._CPU_SAMPLES
    finally:
        runtime._CPU_SAMPLES.pop(stale, None)
        store.close()


def test_pod_metrics_is_empty_without_pods(tmp_path: Path) -> None:
    store = Store(None)
    try:
        info = ClusterInfo(name="m", index=201, state_dir=tmp_path, token="t", mesh=False)
        assert pod_metrics(store, info) == []
    finally:
        store.close()


async def test_init_containers_run_to_completion_first(tmp_path: Path) -> None:
    marker = tmp_path / "init-done"
    async with local_cluster(tmp_path) as c:
        init = {
            "name": "prepare",
            "image": "x",
            "command": [
                "python",
                "-c",
                f"import time; time.sleep(0.3); open({str(marker)!r}, 'w').write('ok')",
            ],
        }
        check = ["--ready-file", str(marker)]
        c.apply(pod_manifest("inited", [app_container(args=check)], initContainers=[init]))
        await wait_for(lambda: c.pod("inited")["status"]["phase"] == "Running", what="Running")
        assert marker.exists(), "the app started only after its init container finished"
        status = c.pod("inited")["status"]
        assert status["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
        initialized = next(x for x in status["conditions"] if x["type"] == "Initialized")
        assert initialized["status"] == "True"
        failing = {"name": "broken", "image": "x", "command": ["python", "-c", "raise SystemExit(4)"]}
        c.apply(pod_manifest("initfail", [app_container()], initContainers=[failing], restartPolicy="Never"))
        await wait_for(lambda: c.pod("initfail")["status"]["phase"] == "Failed", what="Failed")
        assert not c.pod("initfail")["status"]["containerStatuses"][0]["state"].get("running")


async def test_processes_left_by_an_exited_container_are_killed(tmp_path: Path) -> None:
    async with local_cluster(tmp_path) as c:
        script = (
            "import subprocess, sys\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
            "print('child', child.pid, flush=True)\n"
        )
        container = {"name": "parent", "image": "x", "command": ["python", "-c", script]}
        c.apply(pod_manifest("leaver", [container], restartPolicy="Never"))
        log_file = c.info.pods_dir / "default" / "leaver" / "parent.log"
        text = await wait_for(
            lambda: "child" in log_file.read_text() and log_file.read_text(), what="child pid"
        )
        child = int(text.split()[1])
        await wait_for(lambda: c.pod("leaver")["status"]["phase"] == "Succeeded", what="Succeeded")
        await wait_for(lambda: not alive(child), what="the child killed with its container")


async def test_post_start_hook_runs_before_ready_and_a_failing_one_restarts(tmp_path: Path) -> None:
    marker = tmp_path / "post-started"
    async with local_cluster(tmp_path) as c:
        hook = {
            "exec": {
                "command": [
                    "python",
                    "-c",
                    f"import time; time.sleep(0.5); open({str(marker)!r}, 'w').write('x')",
                ]
            }
        }
        c.apply(pod_manifest("hooked", [app_container(lifecycle={"postStart": hook})]))
        await wait_for(lambda: c.pod("hooked")["status"]["containerStatuses"][0]["ready"], what="ready")
        assert marker.exists(), "ready only after postStart finished"
        bad = {"exec": {"command": ["python", "-c", "raise SystemExit(1)"]}}
        c.apply(
            pod_manifest(
                "badhook", [app_container(lifecycle={"postStart": bad})], terminationGracePeriodSeconds=2
            )
        )
        await wait_for(
            lambda: c.pod("badhook")["status"]["containerStatuses"][0]["restartCount"] >= 1,
            timeout=20,
            what="restart",
        )
        assert not c.pod("badhook")["status"]["containerStatuses"][0]["ready"]


async def test_a_pod_recreated_under_the_same_name_never_shares_the_old_pods_process_or_files(
    tmp_path: Path,
) -> None:
    """``delete --force`` then create again (kubectl replace --force): the old pod's worker is
    still stopping its process when the new pod arrives under the same directory name. The new pod
    must get a process of its own, and what the old one cleans up must not be the new one's files
    (a lost pid file is a duplicate after the next daemon restart)."""
    async with local_cluster(tmp_path) as c:
        c.apply(pod_manifest("same", [app_container()]))
        old = await wait_for(
            lambda: c.pod("same")["status"].get("phase") == "Running" and c.pod("same"), what="Running"
        )
        old_pid = pids_of(old)[0]
        c.store.delete(PODS, "default", "same", grace_period_seconds=0)
        c.apply(pod_manifest("same", [app_container()]))
        new = await wait_for(
            lambda: (
                c.pod("same")["metadata"]["uid"] != old["metadata"]["uid"]
                and c.pod("same")["status"].get("phase") == "Running"
                and c.pod("same")
            ),
            what="the new pod running",
        )
        await wait_for(lambda: not alive(old_pid), what="the old process gone")
        await c.manager.wait_idle()
        await asyncio.sleep(0.5)  # past the old worker's last step, had it kept one
        status = c.pod("same")["status"]["containerStatuses"][0]
        new_pid = pids_of(c.pod("same"))[0]
        assert new_pid != old_pid and alive(new_pid)
        assert status["restartCount"] == 0, status
        pod_dir = c.info.pods_dir / "default" / "same"
        assert (pod_dir / "app.pid").read_text().split()[0] == str(new_pid)
        assert (pod_dir / "token").exists() and (pod_dir / "app.log").exists()
        assert new["metadata"]["uid"] == c.pod("same")["metadata"]["uid"]
