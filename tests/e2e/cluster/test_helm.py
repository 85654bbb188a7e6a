"""The Helm chart in helm/basement, rendered by the real Helm engine (helm-python-sdk: Helm's Go SDK)
and checked against the Kubernetes 1.32 API schemas (kubernetes-validate, strict).

What must hold: the chart lints clean; defaults and every helm/values/*.yaml render to valid
manifests; SFU pods are host-networked with the UDP range, node IP and drain grace period (or, with
sfu.hostNetwork=false, on the pod network with host ports, pod-IP gathering and a NetworkPolicy); secrets
only ever arrive through secretKeyRef; bad values fail with a message naming the setting; toggles
(bundled/external Redis, DaemonSet/Deployment, HPA, processes per pod) change what they should; and
the environment the chart gives each process is accepted by signalling.config.
"""

from __future__ import annotations

import base64
import copy
import math
import re
from functools import cache
from pathlib import Path

import helm_python
import kubernetes_validate
import pytest
import yaml

from signalling import config
from signalling.ports import free_port

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "helm" / "basement"
VALUES_FILES = sorted((ROOT / "helm" / "values").glob("*.yaml"))
KUBE = "1.32.0"
RELEASE, NAMESPACE = "basement", "rtc"
FULL = "basement"  # fullname: the release name already contains the chart name

# Env vars that carry secrets: they must only ever come from a secretKeyRef.
SECRET_ENV = {"BASEMENT_GRANT_SECRET", "BASEMENT_ADMIN_KEY", "BASEMENT_WRITER_KEY", "BASEMENT_REDIS_PASSWORD",
              "REDIS_PASSWORD", "REDISCLI_AUTH", "BASEMENT_TURN_SECRET"}
# Env the chart sets that signalling.config has no field for yet (the processes must add it).
PENDING_SETTINGS: set[str] = set()
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
)
WORKLOAD_KINDS = {"Deployment", "DaemonSet", "StatefulSet"}

# The SFU off the host network (media through host ports, ICE over TCP): helm/values/ has no example of
# it, so the render-wide checks run over these as well.
NO_HOST_NETWORK = {"sfu": {"hostNetwork": False, "udpPort": 7882, "tcpPort": 7884, "processes": 2}}

RPC = {"mode": "rpc", "rpcUrl": "https://rpc.example", "chainId": 8453, "writerKey": {"existingSecret": "my-writer"}}


# --- rendering helpers --------------------------------------------------------------------------


@cache
def _chart() -> helm_python.Chart:
    return helm_python.Chart.load(str(CHART))


def render_raw(values: dict | None = None) -> dict[str, str]:
    return _chart().render(copy.deepcopy(values or {}), name=RELEASE, namespace=NAMESPACE, is_install=True)


def render(values: dict | None = None) -> list[dict]:
    docs = []
    for path, text in sorted(render_raw(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def notes(values: dict | None = None) -> str:
    return next(t for p, t in render_raw(values).items() if p.endswith("NOTES.txt"))


def load_values(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def values_of(value_set: Path | dict | None) -> dict:
    """A VALUE_SETS entry as values: None is the defaults, a Path an example file."""
    if value_set is None:
        return {}
    return load_values(value_set) if isinstance(value_set, Path) else copy.deepcopy(value_set)


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def sfu_workload(docs: list[dict]) -> dict:
    found = [d for d in docs if d["kind"] in WORKLOAD_KINDS and d["metadata"]["name"] == f"{FULL}-sfu"]
    assert len(found) == 1, f"expected one SFU workload, got {[d['kind'] for d in found]}"
    return found[0]


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def all_containers(docs: list[dict]):
    for d in docs:
        if d["kind"] in WORKLOAD_KINDS:
            spec = pod_spec(d)
            for c in spec.get("initContainers", []) + spec["containers"]:
                yield d, c


def resolve_env(container: dict, node_ip: str = "10.1.2.3", pod: str = "basement-sfu-x7k2p",
                pod_ip: str = "10.1.2.3") -> dict[str, str]:
    """What the process would see: fieldRefs and secretKeyRefs filled in, $(VAR) expanded in order."""
    out: dict[str, str] = {}
    for e in container.get("env", []):
        if "value" in e:
            out[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: out.get(m.group(1), m.group(0)), e["value"])
        else:
            src = e["valueFrom"]
            if "resourceFieldRef" in src:  # the container's CPU limit in whole cores, rounded up (divisor 1)
                ref = src["resourceFieldRef"]
                assert (ref["resource"], ref["divisor"], ref["containerName"]) == ("limits.cpu", "1", container["name"])
                cpu = str(container["resources"]["limits"]["cpu"])
                out[e["name"]] = str(-(-int(cpu[:-1]) // 1000) if cpu.endswith("m") else math.ceil(float(cpu)))
            elif "fieldRef" in src:
                out[e["name"]] = {"status.hostIP": node_ip, "metadata.name": pod,
                                  "status.podIP": pod_ip}[src["fieldRef"]["fieldPath"]]
            else:
                out[e["name"]] = "redis://redis.example:6379/0" if e["name"] == "BASEMENT_REDIS_URL" else "s3cret"
    return out


# Every render-wide check (lint, API validity, ports, lockdown, secrets, ingress) runs over these.
VALUE_SETS = [
    pytest.param(None, id="defaults"),
    *(pytest.param(p, id=p.name) for p in VALUES_FILES),
    pytest.param(NO_HOST_NETWORK, id="no-host-network"),
    pytest.param(merge(NO_HOST_NETWORK, {"sfu": {"workers": 3}}), id="workers-no-host-network"),
    pytest.param({"sfu": {"workers": "cpuLimit", "resources": {"limits": {"cpu": "4"}}}}, id="workers-cpu-limit"),
    pytest.param(merge(load_values(ROOT / "helm" / "values" / "production.yaml"),
                       {"sfu": {"hostNetwork": False, "udpPort": 7882, "tcpPort": 7886}}),
                 id="production.yaml-no-host-network"),
]


# --- lint and schema validation -----------------------------------------------------------------


def test_there_are_example_values_files():
    names = {p.name for p in VALUES_FILES}
    assert {"production.yaml", "minimal.yaml"} <= names, names


@pytest.mark.parametrize("values_file", VALUE_SETS)
@pytest.mark.parametrize("with_turn", [False, True], ids=["", "turn"])
def test_lint_strict(values_file, with_turn):
    values = values_of(values_file)
    values = merge(values, TURN_ON) if with_turn else values or None
    report = helm_python.lint(str(CHART), values, strict=True, kube_version=f"v{KUBE}")
    assert report["errors"] == [], report
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems


def check_service_monitor(doc: dict, docs: list[dict]) -> None:
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert doc["metadata"]["name"] and doc["metadata"]["namespace"] == NAMESPACE
    spec = doc["spec"]
    selector = spec["selector"]["matchLabels"]
    assert selector and spec["endpoints"], doc
    services = [s for s in find(docs, "Service") if selector.items() <= s["metadata"]["labels"].items()]
    assert len(services) == 1, f"ServiceMonitor {doc['metadata']['name']} selects {len(services)} Services"
    port_names = {p["name"] for p in services[0]["spec"]["ports"]}
    for ep in spec["endpoints"]:
        assert ep["port"] in port_names, (ep, port_names)
        assert ep["path"] == "/metrics"
        assert re.fullmatch(r"\d+(ms|s|m|h)", ep["interval"])


CRD_CHECKS = {("monitoring.coreos.com/v1", "ServiceMonitor"): check_service_monitor}


@pytest.mark.parametrize("values_file", VALUE_SETS)
@pytest.mark.parametrize("with_turn", [False, True], ids=["", "turn"])
def test_every_rendered_document_is_valid_kubernetes(values_file, with_turn):
    values = values_of(values_file)
    docs = render(merge(values, TURN_ON) if with_turn else values)
    assert docs
    seen = set()
    for doc in docs:
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in seen, f"duplicate {key}"
        seen.add(key)
        crd_check = CRD_CHECKS.get((doc["apiVersion"], doc["kind"]))
        if crd_check:
            crd_check(doc, docs)
            continue
        try:
            kubernetes_validate.validate(doc, KUBE, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{key}: {str(e).splitlines()[0]}")
        labels = doc["metadata"]["labels"]
        for label in STANDARD_LABELS:
            assert labels.get(label), f"{key} lacks label {label}"
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, key


@pytest.mark.parametrize("values_file", VALUE_SETS)
def test_services_and_probes_point_at_real_ports(values_file):
    docs = render(values_of(values_file))
    workloads = [d for d in docs if d["kind"] in WORKLOAD_KINDS]
    for wl in workloads:
        assert wl["spec"]["selector"]["matchLabels"].items() <= wl["spec"]["template"]["metadata"]["labels"].items()
    for svc in find(docs, "Service"):
        sel = svc["spec"]["selector"]
        targets = [w for w in workloads if sel.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(targets) == 1, f"Service {svc['metadata']['name']} selects {len(targets)} workloads"
        ports = [p for c in pod_spec(targets[0])["containers"] for p in c.get("ports", [])]
        for sp in svc["spec"]["ports"]:
            tp = sp["targetPort"]
            assert any(p["name"] == tp or p["containerPort"] == tp for p in ports), (svc["metadata"]["name"], tp)
    for _, c in all_containers(docs):
        names = {p["name"] for p in c.get("ports", [])}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            http = c.get(probe, {}).get("httpGet")
            if http:
                assert http["port"] in names, (c["name"], probe, http)


@pytest.mark.parametrize("values_file", VALUE_SETS)
def test_pods_are_locked_down(values_file):
    docs = render(values_of(values_file))
    for wl, c in all_containers(docs):
        pod = pod_spec(wl)
        where = f"{wl['kind']}/{wl['metadata']['name']}/{c['name']}"
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, where
        assert sc["allowPrivilegeEscalation"] is False, where
        assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], where
    # the chart's coturn, with TURN over TLS on 443: the one capability that binds a low port, no more
    docs = render(merge(values_of(values_file), TURN_ON))
    turn = pod_spec(one(docs, "Deployment", f"{FULL}-turn"))
    assert [c["securityContext"]["capabilities"] for c in turn["containers"]] == [
        {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}]
    assert [c["securityContext"]["capabilities"] for c in turn["initContainers"]] == [{"drop": ["ALL"]}]
    for c in turn["containers"] + turn["initContainers"]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True and "privileged" not in c["securityContext"]
        assert pod["automountServiceAccountToken"] is False, where
        # Service links would inject BASEMENT_*_PORT=tcp://… for Services named basement-*.
        assert pod["enableServiceLinks"] is False, where
        assert "privileged" not in sc, where


TURN_ON = {"turn": {"enabled": True, "host": "turn.example.com", "tlsSecret": "turn-tls"}}


# --- the TURN server (coturn) ---------------------------------------------------------------------


def test_turn_is_off_by_default():
    docs = render()
    assert not [d for d in docs if d["metadata"]["name"].endswith("-turn")]
    envs = {name for _, c in all_containers(docs) for name in env_of(c)}
    assert not {e for e in envs if e.startswith("BASEMENT_TURN")}


def test_turn_runs_coturn_on_the_host_network_and_signalling_hands_out_credentials():
    docs = render(merge(TURN_ON, {"turn": {"allowedPeerRanges": ["10.0.1.0-10.0.1.255"]}}))
    turn = one(docs, "Deployment", f"{FULL}-turn")
    pod = pod_spec(turn)
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    (c,) = pod["containers"]
    assert c["command"] == ["turnserver", "-c", "/run/turn/turnserver.conf"]
    assert {(p["containerPort"], p["protocol"]) for p in c["ports"]} == {(3478, "UDP"), (3478, "TCP"), (443, "TCP")}
    conf = one(docs, "ConfigMap", f"{FULL}-turn")["data"]["turnserver.conf"].splitlines()
    for line in ("use-auth-secret", "listening-port=3478", "tls-listening-port=443", "min-port=49152",
                 "max-port=49999", "denied-peer-ip=10.0.0.0-10.255.255.255", "allowed-peer-ip=10.0.1.0-10.0.1.255",
                 "realm=turn.example.com", "no-cli"):
        assert line in conf, line
    # the shared secret: generated into a Secret, read by coturn's init step from a file, never argv
    secret = base64.b64decode(one(docs, "Secret", f"{FULL}-turn")["data"]["turn-secret"]).decode()
    assert len(secret) == 48
    (init,) = pod["initContainers"]
    assert "static-auth-secret" in init["command"][-1] and "cat /etc/turn/secret/secret" in init["command"][-1]
    assert secret not in str(turn) and not any("static-auth-secret=" in line for line in conf)
    # signalling: the URLs clients get, the secret from the same Secret; Settings accepts all of it
    (sig,) = pod_spec(one(docs, "Deployment", f"{FULL}-signal"))["containers"]
    env = env_of(sig)
    assert env["BASEMENT_TURN_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": f"{FULL}-turn", "key": "turn-secret"}
    settings = config.load(env=resolve_env(sig, pod_ip="10.0.0.5"))
    # resumption on: a resume may land on any replica (signalling/cluster/roaming.py)
    assert settings.resume_grace_s == 20
    assert settings.turn_urls == ["turn:turn.example.com:3478?transport=udp",
                                  "turn:turn.example.com:3478?transport=tcp",
                                  "turns:turn.example.com:443?transport=tcp"]
    assert settings.turn_secret == "s3cret" and settings.turn_credential_ttl_s == 28800


def test_turn_with_an_existing_secret_and_without_tls():
    docs = render({"turn": {"enabled": True, "host": "203.0.113.7", "secret": {"existingSecret": "my-turn"}}})
    assert not find(docs, "Secret", f"{FULL}-turn")
    pod = pod_spec(one(docs, "Deployment", f"{FULL}-turn"))
    assert {v["name"]: v.get("secret", {}).get("secretName") for v in pod["volumes"]}["secret"] == "my-turn"
    (c,) = pod["containers"]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}  # no low port without TLS
    (sig,) = pod_spec(one(docs, "Deployment", f"{FULL}-signal"))["containers"]
    assert "turns:" not in env_of(sig)["BASEMENT_TURN_URLS"]["value"]
    assert "no-tls" in one(docs, "ConfigMap", f"{FULL}-turn")["data"]["turnserver.conf"].splitlines()


# --- the SFU pod ------------------------------------------------------------------------------------


def test_sfu_defaults_host_network_udp_range_node_ip_and_drain():
    docs = render()
    ds = sfu_workload(docs)
    assert ds["kind"] == "DaemonSet"
    pod = pod_spec(ds)
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["terminationGracePeriodSeconds"] == 3600
    (c,) = pod["containers"]
    assert c["command"] == ["basement", "sfu"]
    env = env_of(c)
    assert env["BASEMENT_RTP_PORT_MIN"]["value"] == "50000"
    assert env["BASEMENT_RTP_PORT_MAX"]["value"] == "50999"
    assert env["BASEMENT_PUBLIC_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert env["BASEMENT_NODE_ID"]["value"] == "$(POD_NAME)"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # hostNetwork: health and metrics listen on the pod (= node) IP, not on every interface of the node
    assert env["BASEMENT_HOST"]["value"] == env["BASEMENT_METRICS_HOST"]["value"] == "$(POD_IP)"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert int(env["BASEMENT_DRAIN_TIMEOUT_S"]["value"]) < pod["terminationGracePeriodSeconds"]
    ports = {p["name"]: p for p in c["ports"]}
    assert ports["http"]["containerPort"] == int(env["BASEMENT_PORT"]["value"]) == 7880
    assert ports["metrics"]["containerPort"] == int(env["BASEMENT_METRICS_PORT"]["value"]) == 9090
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # no ICE over TCP unless asked for, and no host port mapping on the host network
    assert set(ports) == {"http", "metrics"} and "BASEMENT_ICE_TCP_PORT" not in env
    assert not any("hostPort" in p for p in c["ports"])
    assert env["BASEMENT_ICE_ADDRESSES"]["value"] == "$(NODE_IP)"


def test_sfu_env_is_accepted_by_settings():
    (c,) = pod_spec(sfu_workload(render()))["containers"]
    env = resolve_env(c)
    unknown = {k[len(config.ENV_PREFIX) :].lower() for k in env if k.startswith(config.ENV_PREFIX)}
    unknown -= {f for f in config.Settings.__dataclass_fields__}
    assert unknown <= PENDING_SETTINGS, f"chart sets env that Settings does not know: {unknown}"
    s = config.load(env=env)
    assert (s.rtp_port_min, s.rtp_port_max) == (50000, 50999)
    assert s.public_ip == "10.1.2.3" and s.ice_addresses == ["10.1.2.3"]
    assert s.node_id == "basement-sfu-x7k2p"
    assert s.port == 7880 and s.metrics_port == 9090
    assert s.host == s.metrics_host == "10.1.2.3"
    assert s.redis_url == f"redis://{FULL}-redis.{NAMESPACE}.svc:6379/0"
    assert s.redis_password == "s3cret"


def test_sfu_grace_period_public_ip_and_ice_are_configurable():
    docs = render(
        {
            "sfu": {
                "terminationGracePeriodSeconds": 900,
                "publicIp": "203.0.113.7",
                "iceAddresses": "auto",
                "rtpPortMin": 40000,
                "rtpPortMax": 40099,
            }
        }
    )
    pod = pod_spec(sfu_workload(docs))
    assert pod["terminationGracePeriodSeconds"] == 900
    env = env_of(pod["containers"][0])
    assert env["BASEMENT_PUBLIC_IP"] == {"name": "BASEMENT_PUBLIC_IP", "value": "203.0.113.7"}
    assert env["BASEMENT_ICE_ADDRESSES"]["value"] == "auto"
    assert (env["BASEMENT_RTP_PORT_MIN"]["value"], env["BASEMENT_RTP_PORT_MAX"]["value"]) == ("40000", "40099")
    assert env["BASEMENT_DRAIN_TIMEOUT_S"]["value"] == "870"
    assert "UDP 40000-40099" in notes({"sfu": {"rtpPortMin": 40000, "rtpPortMax": 40099}})


def test_sfu_daemonset_vs_deployment_toggle():
    ds_docs = render()
    assert find(ds_docs, "DaemonSet", f"{FULL}-sfu") and not find(ds_docs, "Deployment", f"{FULL}-sfu")
    assert "affinity" not in pod_spec(sfu_workload(ds_docs))

    user_affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "media", "operator": "In", "values": ["yes"]}]}]
            }
        }
    }
    docs = render(
        {
            "sfu": {
                "kind": "Deployment",
                "replicas": 3,
                "affinity": user_affinity,
                "nodeSelector": {"pool": "media"},
                "tolerations": [{"key": "media", "operator": "Exists", "effect": "NoSchedule"}],
            }
        }
    )
    assert not find(docs, "DaemonSet")
    dep = one(docs, "Deployment", f"{FULL}-sfu")
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    pod = pod_spec(dep)
    assert pod["hostNetwork"] is True
    assert pod["nodeSelector"] == {"pool": "media"}
    assert pod["tolerations"][0]["key"] == "media"
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "sfu"
    assert pod["affinity"]["nodeAffinity"] == user_affinity["nodeAffinity"], "user affinity must be kept"


def test_sfu_processes_per_pod_split_ports_and_rtp_range():
    docs = render(
        {"sfu": {"processes": 4, "rtpPortMin": 50000, "rtpPortMax": 50999}, "serviceMonitor": {"enabled": True}}
    )
    containers = pod_spec(sfu_workload(docs))["containers"]
    assert [c["name"] for c in containers] == ["sfu-0", "sfu-1", "sfu-2", "sfu-3"]
    envs = [resolve_env(c) for c in containers]
    ranges = [(int(e["BASEMENT_RTP_PORT_MIN"]), int(e["BASEMENT_RTP_PORT_MAX"])) for e in envs]
    assert ranges == [(50000, 50249), (50250, 50499), (50500, 50749), (50750, 50999)]
    assert len({e["BASEMENT_NODE_ID"] for e in envs}) == 4
    assert [e["BASEMENT_PORT"] for e in envs] == ["7880", "7881", "7882", "7883"]
    assert [e["BASEMENT_METRICS_PORT"] for e in envs] == ["9090", "9091", "9092", "9093"]
    for c, e in zip(containers, envs, strict=True):
        assert config.load(env=e).port == int(e["BASEMENT_PORT"])
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    svc = one(docs, "Service", f"{FULL}-sfu")
    assert len(svc["spec"]["ports"]) == 8
    sm = one(docs, "ServiceMonitor", f"{FULL}-sfu")
    assert [ep["port"] for ep in sm["spec"]["endpoints"]] == [f"metrics-{i}" for i in range(4)]


def test_sfu_one_udp_port_per_process_instead_of_the_range():
    values = {"sfu": {"processes": 2, "udpPort": 7882}}
    containers = pod_spec(sfu_workload(render(values)))["containers"]
    envs = [resolve_env(c) for c in containers]
    assert [e["BASEMENT_ICE_UDP_PORT"] for e in envs] == ["7882", "7883"]
    assert not any("BASEMENT_RTP_PORT_MIN" in e or "BASEMENT_RTP_PORT_MAX" in e for e in envs)
    settings = [config.load(env=e) for e in envs]  # and the settings take it (they refuse both at once)
    assert [(s.ice_udp_port, s.rtp_port_min) for s in settings] == [(7882, 0), (7883, 0)]
    assert "UDP 7882-7883" in notes(values)
    assert "UDP 7882 " in notes({"sfu": {"udpPort": 7882}})
    # a range the single port makes unused is not checked: moving TURN's relays there is fine
    render({"sfu": {"udpPort": 7882}, "turn": {"enabled": True, "host": "t.example", "relayPortMin": 50000,
                                                 "relayPortMax": 50999}})


def test_sfu_workers_per_process_get_their_own_ports_and_are_nodes_of_their_own():
    values = {"sfu": {"processes": 2, "workers": 2, "udpPort": 7882, "tcpPort": 7890, "hostNetwork": False}}
    docs = render(values)
    containers = pod_spec(sfu_workload(docs))["containers"]
    envs = [resolve_env(c) for c in containers]
    assert [(e["BASEMENT_WORKERS"], e["BASEMENT_ICE_UDP_PORT"], e["BASEMENT_ICE_TCP_PORT"]) for e in envs] == [
        ("2", "7882", "7890"), ("2", "7884", "7892")]
    # every worker's port is declared (a host port off the host network) and open in the NetworkPolicy
    assert [_ports(c) for c in containers] == [
        {"http-0": (7880, None, "TCP"), "metrics-0": (9090, None, "TCP"),
         "udp-0-w0": (7882, 7882, "UDP"), "tcp-0-w0": (7890, 7890, "TCP"),
         "udp-0-w1": (7883, 7883, "UDP"), "tcp-0-w1": (7891, 7891, "TCP")},
        {"http-1": (7881, None, "TCP"), "metrics-1": (9091, None, "TCP"),
         "udp-1-w0": (7884, 7884, "UDP"), "tcp-1-w0": (7892, 7892, "TCP"),
         "udp-1-w1": (7885, 7885, "UDP"), "tcp-1-w1": (7893, 7893, "TCP")},
    ]
    policy = one(docs, "NetworkPolicy", f"{FULL}-sfu")
    opened = {p["port"] for rule in policy["spec"]["ingress"] for p in rule.get("ports", [])}
    assert {"udp-0-w0", "udp-0-w1", "udp-1-w0", "udp-1-w1", "tcp-1-w1"} <= opened
    # what each process then gives its workers: exactly the ports declared for it
    from signalling.run.workers import worker_settings

    for c, e in zip(containers, envs, strict=True):
        s = config.load(env=e, groups=config.SUBCOMMAND_GROUPS["sfu"])
        assert s.worker_count == 2
        given = [worker_settings(s, j, 2, f"n-w{j}", config.SUBCOMMAND_GROUPS["sfu"]) for j in range(2)]
        declared = _ports(c)
        assert {(g["ice_udp_port"], "UDP") for g in given} == {(p, proto) for p, _, proto in declared.values()
                                                               if proto == "UDP"}
    assert "UDP 7882-7885" in notes(values) and "TCP 7880-7881 (health)" not in notes(values)


def test_sfu_relay_port_per_worker_on_the_pod_ip_open_to_sfu_pods_only():
    values = {"sfu": {"processes": 2, "workers": 2, "udpPort": 7882, "relayPort": 7950, "hostNetwork": False}}
    docs = render(values)
    containers = pod_spec(sfu_workload(docs))["containers"]
    envs = [resolve_env(c) for c in containers]
    assert [(e["BASEMENT_RELAY_HOST"], e["BASEMENT_RELAY_PORT"]) for e in envs] == [
        ("10.1.2.3", "7950"), ("10.1.2.3", "7952")]  # (the pod IP, as resolve_env gives it)
    assert [{n: p for n, p in _ports(c).items() if n.startswith("relay")} for c in containers] == [
        {"relay-0-w0": (7950, None, "UDP"), "relay-0-w1": (7951, None, "UDP")},
        {"relay-1-w0": (7952, None, "UDP"), "relay-1-w1": (7953, None, "UDP")}]
    policy = one(docs, "NetworkPolicy", f"{FULL}-sfu")
    (rule,) = [r for r in policy["spec"]["ingress"] if any(p["port"].startswith("relay") for p in r["ports"])]
    assert {p["port"] for p in rule["ports"]} == {"relay-0-w0", "relay-0-w1", "relay-1-w0", "relay-1-w1"}
    assert [f["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for f in rule["from"]] == ["sfu"]
    # what each process then gives its workers: the relay ports declared for it, and a span group
    from signalling.run.workers import worker_settings

    for c, e in zip(containers, envs, strict=True):
        s = config.load(env=e, groups=config.SUBCOMMAND_GROUPS["sfu"])
        given = [worker_settings(s, j, 2, f"n-w{j}", config.SUBCOMMAND_GROUPS["sfu"]) for j in range(2)]
        assert {g["relay_port"] + j for j, g in enumerate(given)} == {p for n, (p, _, _) in _ports(c).items()
                                                                     if n.startswith("relay")}
    # off by default: no relay, rooms stay on one process
    (c,) = pod_spec(sfu_workload(render(None)))["containers"]
    assert "BASEMENT_RELAY_HOST" not in resolve_env(c)


def test_sfu_workers_from_the_cpu_limit():
    values = {"sfu": {"workers": "cpuLimit", "resources": {"limits": {"cpu": "1500m", "memory": "2Gi"}}}}
    (c,) = pod_spec(sfu_workload(render(values)))["containers"]
    e = resolve_env(c)
    assert e["BASEMENT_WORKERS"] == "2"  # 1.5 cores, rounded up, as the downward API gives it
    assert config.load(env=e, groups=config.SUBCOMMAND_GROUPS["sfu"]).worker_count == 2
    # a number of workers needs no limit; the default is one per SFU process
    (c,) = pod_spec(sfu_workload(render(None)))["containers"]
    assert resolve_env(c)["BASEMENT_WORKERS"] == "1"


def _ports(container: dict) -> dict[str, tuple]:
    return {p["name"]: (p["containerPort"], p.get("hostPort"), p["protocol"]) for p in container["ports"]}


def test_sfu_ice_tcp_port_per_process_on_the_host_network():
    values = {"sfu": {"processes": 2, "udpPort": 7882, "tcpPort": 7884}}
    docs = render(values)
    pod = pod_spec(sfu_workload(docs))
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    envs = [resolve_env(c) for c in pod["containers"]]
    assert [e["BASEMENT_ICE_TCP_PORT"] for e in envs] == ["7884", "7885"]
    assert [_ports(c) for c in pod["containers"]] == [
        {"http-0": (7880, None, "TCP"), "metrics-0": (9090, None, "TCP"), "media-udp-0": (7882, None, "UDP"),
         "media-tcp-0": (7884, None, "TCP")},
        {"http-1": (7881, None, "TCP"), "metrics-1": (9091, None, "TCP"), "media-udp-1": (7883, None, "UDP"),
         "media-tcp-1": (7885, None, "TCP")},
    ]
    settings = [config.load(env=e) for e in envs]
    assert [(s.ice_udp_port, s.ice_tcp_port, s.port) for s in settings] == [(7882, 7884, 7880), (7883, 7885, 7881)]
    assert all(s.ice_addresses == ["10.1.2.3"] and s.public_ip == "10.1.2.3" for s in settings)
    text = notes(values)
    assert "UDP 7882-7883" in text and "TCP 7884-7885   (ICE over TCP" in text
    assert "SFU pods use the host network" in text
    # with the UDP range too, and next to the chart's coturn (3478, 443) when their ports differ
    (c,) = pod_spec(sfu_workload(render(merge(TURN_ON, {"sfu": {"tcpPort": 7890}}))))["containers"]
    s = config.load(env=resolve_env(c))
    assert (s.ice_tcp_port, s.ice_udp_port, s.rtp_port_min) == (7890, 0, 50000)
    assert _ports(c)["media-tcp"] == (7890, None, "TCP") and "media-udp" not in _ports(c)
    assert "TCP 7890   (ICE over TCP" in notes({"sfu": {"tcpPort": 7890}})
    assert "ICE over TCP" not in notes()


NODE_IP, POD_IP = "10.1.2.3", "10.244.7.9"


def test_sfu_off_the_host_network_maps_media_host_ports_gathers_on_the_pod_and_advertises_the_node():
    docs = render(NO_HOST_NETWORK)
    ds = sfu_workload(docs)
    pod = pod_spec(ds)
    assert "hostNetwork" not in pod and "dnsPolicy" not in pod  # the pod network, default DNS
    containers = pod["containers"]
    # media: host port = container port, so clients reach node IP:port; health and metrics stay in the pod
    assert [_ports(c) for c in containers] == [
        {"http-0": (7880, None, "TCP"), "metrics-0": (9090, None, "TCP"), "media-udp-0": (7882, 7882, "UDP"),
         "media-tcp-0": (7884, 7884, "TCP")},
        {"http-1": (7881, None, "TCP"), "metrics-1": (9091, None, "TCP"), "media-udp-1": (7883, 7883, "UDP"),
         "media-tcp-1": (7885, 7885, "TCP")},
    ]
    for i, c in enumerate(containers):
        raw = env_of(c)
        assert raw["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert raw["BASEMENT_ICE_ADDRESSES"]["value"] == "$(POD_IP)"
        assert raw["BASEMENT_PUBLIC_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
        env = resolve_env(c, node_ip=NODE_IP, pod_ip=POD_IP)
        assert not [v for v in env.values() if "$(" in v], "every $(VAR) is defined before its use"
        unknown = {k[len(config.ENV_PREFIX):].lower() for k in env if k.startswith(config.ENV_PREFIX)}
        assert unknown - set(config.Settings.__dataclass_fields__) <= PENDING_SETTINGS
        s = config.load(env=env)
        assert s.ice_addresses == [POD_IP], "ICE binds where the host ports forward to"
        assert s.public_ip == NODE_IP, "and advertises where clients send"
        assert (s.ice_udp_port, s.ice_tcp_port) == (7882 + i, 7884 + i)
        assert s.host == s.metrics_host == POD_IP  # bindHost podIP: the pod's own address now
        assert (s.port, s.metrics_port) == (7880 + i, 9090 + i)

    # publicIp still replaces the node IP; explicit iceAddresses pass through; another bindHost
    # keeps POD_IP for the gathering
    docs = render(merge(NO_HOST_NETWORK, {"sfu": {"publicIp": "203.0.113.7", "bindHost": "0.0.0.0",
                                                  "processes": 1}}))
    (c,) = pod_spec(sfu_workload(docs))["containers"]
    s = config.load(env=resolve_env(c, node_ip=NODE_IP, pod_ip=POD_IP))
    assert (s.public_ip, s.ice_addresses, s.host) == ("203.0.113.7", [POD_IP], "0.0.0.0")
    assert _ports(c)["media-udp"] == (7882, 7882, "UDP")
    (c,) = pod_spec(sfu_workload(render({"sfu": {"hostNetwork": False, "udpPort": 7882,
                                                  "iceAddresses": "auto"}})))["containers"]
    assert env_of(c)["BASEMENT_ICE_ADDRESSES"]["value"] == "auto" and "media-tcp" not in _ports(c)
    assert "BASEMENT_ICE_TCP_PORT" not in env_of(c)

    # Deployment mode: host ports still collide per node, so the anti-affinity and maxSurge 0 stay
    dep = sfu_workload(render(merge(NO_HOST_NETWORK, {"sfu": {"kind": "Deployment", "replicas": 3}})))
    assert dep["kind"] == "Deployment" and dep["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    (term,) = pod_spec(dep)["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert "hostNetwork" not in pod_spec(dep)

    text = notes(NO_HOST_NETWORK)
    assert "not on the host network" in text
    assert "UDP 7882-7883" in text and "TCP 7884-7885" in text
    assert "hostNetwork pods need" not in text and "Pod Security" in text and "hostPort" in text
    assert "UDP 7882 " in notes({"sfu": {"hostNetwork": False, "udpPort": 7882}})


def test_sfu_network_policy_only_off_the_host_network():
    docs = render(NO_HOST_NETWORK)
    sfu = sfu_workload(docs)
    sfu_labels = sfu["spec"]["template"]["metadata"]["labels"]
    policies = {p["metadata"]["name"]: p["spec"] for p in find(docs, "NetworkPolicy")}
    assert set(policies) == {f"{FULL}-redis", f"{FULL}-signal", f"{FULL}-sfu"}
    sfu_np = policies[f"{FULL}-sfu"]
    assert _selects(sfu_np["podSelector"], sfu_labels) and sfu_np["policyTypes"] == ["Ingress"]
    assert [name for name, p in policies.items() if _selects(p["podSelector"], sfu_labels)] == [f"{FULL}-sfu"]
    declared = {p["name"]: p["protocol"] for c in pod_spec(sfu)["containers"] for p in c["ports"]}
    media, private = sfu_np["ingress"]
    # media from anywhere (no `from`), every media port of every process, with its protocol
    assert "from" not in media
    assert {p["port"]: p["protocol"] for p in media["ports"]} == {
        n: proto for n, proto in declared.items() if n.startswith("media-")}
    # health and metrics like the signalling metrics: networkPolicy.metricsFrom
    assert private["from"] == [{"namespaceSelector": {}}]
    assert {p["port"]: p["protocol"] for p in private["ports"]} == {
        n: proto for n, proto in declared.items() if not n.startswith("media-")}
    # Redis still admits the SFU pods by their labels (which now works: they are ordinary pods)
    (rule,) = policies[f"{FULL}-redis"]["ingress"]
    assert any(_selects(peer["podSelector"], sfu_labels) for peer in rule["from"] if "podSelector" in peer)
    text = notes(NO_HOST_NETWORK)
    assert f"NetworkPolicy {FULL}-sfu admits" in text
    assert "NetworkPolicy does not cover them" not in text and "networkPolicy.sfuNodeCIDRs" not in text

    scoped = render(merge(NO_HOST_NETWORK, {"networkPolicy": {"metricsFrom": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}}))
    _, private = one(scoped, "NetworkPolicy", f"{FULL}-sfu")["spec"]["ingress"]
    assert private["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    udp_only = render({"sfu": {"hostNetwork": False, "udpPort": 7882}})
    media, _ = one(udp_only, "NetworkPolicy", f"{FULL}-sfu")["spec"]["ingress"]
    assert media["ports"] == [{"port": "media-udp", "protocol": "UDP"}]
    assert not find(render(merge(NO_HOST_NETWORK, {"networkPolicy": {"enabled": False}})), "NetworkPolicy")
    # on the host network no policy pretends to cover the SFU, ICE over TCP or not
    for values in (None, {"sfu": {"udpPort": 7882, "tcpPort": 7884}}):
        assert not find(render(values), "NetworkPolicy", f"{FULL}-sfu")


# --- signalling -----------------------------------------------------------------------------------


def test_signal_deployment_service_and_probes():
    docs = render()
    dep = one(docs, "Deployment", f"{FULL}-signal")
    assert dep["spec"]["replicas"] == 1  # the embedded chain lives in the pod: one replica
    (c,) = pod_spec(dep)["containers"]
    assert c["command"] == ["basement", "signal"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "hostNetwork" not in pod_spec(dep)
    s = config.load(env=resolve_env(c))
    # HTTP everywhere in the pod's namespace (Service, probes, port-forward); metrics on the pod IP only
    assert (s.host, s.port, s.metrics_host, s.metrics_port) == ("0.0.0.0", 8080, "10.1.2.3", 9090)
    assert s.chain == "embedded" and s.admin_key == "" and s.writer_key == ""
    svc = one(docs, "Service", f"{FULL}-signal")
    assert svc["spec"]["type"] == "ClusterIP"
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"http": 8080, "metrics": 9090}
    assert not find(docs, "Ingress") and not find(docs, "HorizontalPodAutoscaler")
    assert not find(docs, "ServiceMonitor")
    # one replica: no signalling budget (minAvailable=1 would block every drain)
    pdbs = {p["metadata"]["name"]: p["spec"] for p in find(docs, "PodDisruptionBudget")}
    assert pdbs == {f"{FULL}-sfu": {"maxUnavailable": 1, "selector": sfu_workload(docs)["spec"]["selector"]}}


RPC_CHAIN = {"mode": "rpc", "rpcUrl": "https://rpc.example", "chainId": 8453, "writerKey": {"existingSecret": "w"}}


def test_session_recording_values_reach_the_pods_that_use_them():
    docs = render({"chain": RPC_CHAIN, "signal": {"replicas": 2},
                   "sessions": {"record": "all", "ipfsApi": "http://ipfs.infra.svc:5001", "batchSize": 50}})
    (sig,) = pod_spec(one(docs, "Deployment", f"{FULL}-signal"))["containers"]
    s = config.load(env=resolve_env(sig))  # the replicas write (and end a dead node's sessions)
    assert (s.ipfs_api, s.writer_batch_size, s.record_sessions) == ("http://ipfs.infra.svc:5001", 50, "all")
    (sfu,) = pod_spec(sfu_workload(docs))["containers"]
    assert config.load(env=resolve_env(sfu)).record_sessions == "all"  # the nodes track
    pinned = render({"sessions": {"ipfsApi": "http://ipfs:5001", "pinService": "https://api.pinata.cloud/psa",
                                  "pinToken": {"existingSecret": "pinata"}}})
    (sig,) = pod_spec(one(pinned, "Deployment", f"{FULL}-signal"))["containers"]
    assert env_of(sig)["BASEMENT_IPFS_PIN_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "pinata",
                                                                                    "key": "pin-token"}}
    s = config.load(env=resolve_env(sig))
    assert s.ipfs_pin_service == "https://api.pinata.cloud/psa" and s.ipfs_pin_token
    defaults = render()
    (sig,) = pod_spec(one(defaults, "Deployment", f"{FULL}-signal"))["containers"]
    s = config.load(env=resolve_env(sig))
    assert (s.ipfs_api, s.writer_batch_size, s.record_sessions) == ("", 1, "gated")


def test_more_replicas_on_a_shared_chain_get_a_disruption_budget():
    docs = render({"chain": RPC_CHAIN, "signal": {"replicas": 3}})
    dep = one(docs, "Deployment", f"{FULL}-signal")
    assert dep["spec"]["replicas"] == 3
    pdbs = {p["metadata"]["name"]: p["spec"] for p in find(docs, "PodDisruptionBudget")}
    assert pdbs[f"{FULL}-signal"] == {"minAvailable": 1, "selector": dep["spec"]["selector"]}
    (c,) = pod_spec(dep)["containers"]
    assert config.load(env=resolve_env(c)).chain == "rpc"


def test_hpa_targets_the_signalling_deployment():
    docs = render(
        {
            "chain": RPC_CHAIN,
            "signal": {
                "autoscaling": {
                    "enabled": True,
                    "minReplicas": 3,
                    "maxReplicas": 9,
                    "targetCPUUtilizationPercentage": 65,
                }
            }
        }
    )
    dep = one(docs, "Deployment", f"{FULL}-signal")
    (hpa,) = find(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": dep["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 9)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 65}
    assert "replicas" not in dep["spec"], "the HPA owns the replica count"


def test_ingress_routes_to_signal_service_and_sets_public_url():
    values = {
        "signal": {
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "3600"},
                "hosts": [{"host": "meet.example.org", "paths": [{"path": "/", "pathType": "Prefix"}]}],
                "tls": [{"hosts": ["meet.example.org"], "secretName": "meet-tls"}],
            }
        }
    }
    docs = render(values)
    (ing,) = find(docs, "Ingress")
    assert ing["spec"]["ingressClassName"] == "nginx"
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"{FULL}-signal", "port": {"name": "http"}}
    assert one(docs, "Service", backend["name"])
    (c,) = pod_spec(one(docs, "Deployment", f"{FULL}-signal"))["containers"]
    assert env_of(c)["BASEMENT_PUBLIC_URL"]["value"] == "https://meet.example.org"
    assert "https://meet.example.org/" in notes(values)


# --- secrets ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", VALUE_SETS)
def test_secrets_only_arrive_through_secret_key_refs(values_file):
    docs = render(values_of(values_file))
    for wl, c in all_containers(docs):
        for e in c.get("env", []):
            if e["name"] in SECRET_ENV:
                assert set(e) == {"name", "valueFrom"} and "secretKeyRef" in e["valueFrom"], (wl["kind"], e)
            if e["name"] == "BASEMENT_REDIS_URL" and "value" in e:
                assert "@" not in e["value"], e
    assert not find(docs, "ConfigMap")


def test_no_literal_secret_by_default():
    docs = render()
    assert {s["metadata"]["name"] for s in find(docs, "Secret")} == {f"{FULL}-grant", f"{FULL}-redis-auth"}
    secret = one(docs, "Secret", f"{FULL}-grant")
    key = base64.b64decode(secret["data"]["grant-secret"]).decode()
    assert len(key) == 64
    # Generated per install, not a constant baked into the chart.
    other = base64.b64decode(one(render(), "Secret", f"{FULL}-grant")["data"]["grant-secret"]).decode()
    assert key != other
    assert key not in (CHART / "values.yaml").read_text()
    envs = {name: e for _, c in all_containers(docs) for name, e in env_of(c).items()}
    assert "BASEMENT_ADMIN_KEY" not in envs and "BASEMENT_WRITER_KEY" not in envs


def test_production_values_create_no_secret_objects():
    docs = render(load_values(ROOT / "helm" / "values" / "production.yaml"))
    assert not find(docs, "Secret"), "production.yaml must use existingSecret everywhere"
    (c,) = pod_spec(one(docs, "Deployment", f"{FULL}-signal"))["containers"]
    env = env_of(c)
    assert env["BASEMENT_WRITER_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "basement-writer", "key": "writer-key"}
    assert env["BASEMENT_ADMIN_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "basement-admin"
    assert env["BASEMENT_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "basement-redis"


def test_existing_grant_secret_replaces_the_generated_one():
    docs = render({"grantSecret": {"existingSecret": "my-grant", "key": "k"}})
    assert not find(docs, "Secret", f"{FULL}-grant")
    for _, c in all_containers(docs):
        if c["name"].startswith(("sfu", "signal")):
            assert env_of(c)["BASEMENT_GRANT_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "my-grant", "key": "k"}


def test_writer_key_is_a_secret_key_ref_even_when_the_chart_creates_the_secret():
    sentinel = "0x" + "ab12" * 16
    values = {"chain": merge(RPC, {"writerKey": {"existingSecret": "", "create": True, "value": sentinel}})}
    raw = render_raw(values)
    docs = render(values)
    (secret,) = find(docs, "Secret", f"{FULL}-writer")
    assert base64.b64decode(secret["data"]["writer-key"]).decode() == sentinel
    # The plain key appears nowhere: not in a pod spec, not in NOTES.
    assert all(sentinel not in text for text in raw.values())
    (c,) = pod_spec(one(docs, "Deployment", f"{FULL}-signal"))["containers"]
    assert env_of(c)["BASEMENT_WRITER_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{FULL}-writer",
        "key": "writer-key",
    }
    assert "WARNING" in notes(values) and "PRIVATE KEY" in notes(values)
    assert "WARNING" not in notes({"chain": RPC})


def test_chain_rpc_env_is_accepted_by_settings():
    values = {"chain": merge(RPC, {"sessionLogAddress": "0x" + "1" * 40})}
    (c,) = pod_spec(one(render(values), "Deployment", f"{FULL}-signal"))["containers"]
    s = config.load(env=resolve_env(c))
    assert (s.chain, s.rpc_url, s.chain_id, s.session_log_address) == (
        "rpc",
        "https://rpc.example",
        8453,
        "0x" + "1" * 40,
    )
    assert s.writer_key == "s3cret"


# --- bad values fail with a clear message ---------------------------------------------------------

FAIL_CASES = {
    "rpc-without-writer-secret": (
        {"chain": {"mode": "rpc", "rpcUrl": "https://rpc.example"}},
        "chain.mode=rpc needs the session-log writer key",
    ),
    "rpc-without-url": (
        {"chain": {"mode": "rpc", "writerKey": {"existingSecret": "w"}}},
        "chain.mode=rpc needs chain.rpcUrl",
    ),
    "writer-value-without-opt-in": ({"chain": {"writerKey": {"value": "0xabc"}}}, "chain.writerKey.create is false"),
    "writer-create-without-value": (
        {"chain": {"writerKey": {"create": True}}},
        "chain.writerKey.create=true needs chain.writerKey.value",
    ),
    "pin-service-without-token": (
        {"sessions": {"ipfsApi": "http://ipfs:5001", "pinService": "https://api.pinata.cloud/psa"}},
        "sessions.pinService needs sessions.ipfsApi",
    ),
    "embedded-chain-two-replicas": (
        {"signal": {"replicas": 2}},
        "chain.mode=embedded runs one in-process chain per signalling pod, so signal.replicas=2 would give",
    ),
    "embedded-chain-autoscaling": (
        {"signal": {"autoscaling": {"enabled": True}}},
        "so autoscaling would give each its own token balances",
    ),
    "admin-without-secret": ({"admin": {"enabled": True}}, "admin.enabled=true needs admin.existingSecret"),
    "both-redis": ({"redis": {"external": {"url": "redis://r:6379/0"}}}, "redis: choose one"),
    "no-redis": ({"redis": {"bundled": {"enabled": False}}}, "redis: no Redis configured"),
    "no-grant-key": ({"grantSecret": {"generate": False}}, "grantSecret: every pod must share one grant key"),
    "rtp-range-reversed": (
        {"sfu": {"rtpPortMin": 51000, "rtpPortMax": 50000}},
        "rtpPortMin (51000) must be <= rtpPortMax (50000)",
    ),
    "rtp-range-too-small": (
        {"sfu": {"processes": 8, "rtpPortMin": 50000, "rtpPortMax": 50050}},
        "fewer than 10 ports to each of the 8 processes",
    ),
    "http-in-rtp-range": ({"sfu": {"port": 50010}}, "HTTP ports overlap the RTP range"),
    "turn-without-host": ({"turn": {"enabled": True}}, "turn.enabled=true needs turn.host"),
    "turn-relay-in-rtp-range": (
        {"turn": {"enabled": True, "host": "t.example", "relayPortMin": 50500, "relayPortMax": 51500}},
        "relay port range overlaps sfu.rtpPortMin-rtpPortMax",
    ),
    "ports-collide": ({"sfu": {"metricsPort": 7880}}, "overlap metrics ports"),
    "udp-port-privileged": ({"sfu": {"udpPort": 443}}, "udpPort 443 is below 1024"),
    "udp-port-past-65535": ({"sfu": {"udpPort": 65535, "processes": 2}}, "goes past 65535"),
    "turn-relay-on-udp-port": (
        {"sfu": {"udpPort": 49160}, "turn": {"enabled": True, "host": "t.example"}},
        "relay port range overlaps sfu.udpPort",
    ),
    "tcp-port-privileged": ({"sfu": {"tcpPort": 443}}, "tcpPort 443 is below 1024"),
    "tcp-port-past-65535": ({"sfu": {"tcpPort": 65535, "processes": 2}}, "tcpPort 65535 + 2 processes goes past 65535"),
    "tcp-port-on-http": (
        {"sfu": {"tcpPort": 7881, "processes": 2}},
        "ICE-TCP ports 7881-7882 (tcpPort) overlap HTTP ports 7880-7881",
    ),
    "tcp-port-on-metrics": (
        {"sfu": {"tcpPort": 9088, "processes": 3}},
        "ICE-TCP ports 9088-9090 (tcpPort) overlap metrics ports 9090-9092",
    ),
    "tcp-port-on-turn": (
        {"sfu": {"tcpPort": 3477, "processes": 2}, "turn": {"enabled": True, "host": "t.example"}},
        "turn: TCP port 3478 (coturn listens there) is one of sfu.tcpPort 3477-3478",
    ),
    "tcp-port-on-turns": (
        {"sfu": {"tcpPort": 5349}, "turn": {"enabled": True, "host": "t.example", "tlsSecret": "t", "tlsPort": 5349}},
        "turn: TCP port 5349 (coturn listens there)",
    ),
    "turn-relay-on-tcp-port": (
        {"sfu": {"tcpPort": 49160}, "turn": {"enabled": True, "host": "t.example"}},
        "relay port range overlaps sfu.tcpPort",
    ),
    "workers-cpu-limit-without-limit": (
        {"sfu": {"workers": "cpuLimit"}}, "sfu.workers=cpuLimit needs sfu.resources.limits.cpu",
    ),
    "workers-cpu-limit-with-udp-port": (
        {"sfu": {"workers": "cpuLimit", "udpPort": 7882, "resources": {"limits": {"cpu": "2"}}}},
        "sfu.workers=cpuLimit needs the RTP range",
    ),
    "workers-udp-past-65535": ({"sfu": {"udpPort": 65530, "processes": 2, "workers": 4}}, "+ 8 processes goes past"),
    "workers-rtp-range-too-small": (
        {"sfu": {"workers": 8, "rtpPortMin": 50000, "rtpPortMax": 50050}},
        "fewer than 10 ports to each of the 8 processes",
    ),
    "no-host-network-without-udp-port": (
        {"sfu": {"hostNetwork": False}},
        "sfu.hostNetwork=false needs sfu.udpPort: off the host network media reaches the pod through host ports",
    ),
}


@pytest.mark.parametrize("values,message", FAIL_CASES.values(), ids=FAIL_CASES.keys())
def test_fail_guards(values, message):
    with pytest.raises(helm_python.HelmRenderError, match=re.escape(message)):
        render_raw(values)


SCHEMA_CASES = {
    "sfu-kind": ({"sfu": {"kind": "StatefulSet"}}, "/sfu/kind"),
    "port-range": ({"sfu": {"rtpPortMax": 70000}}, "/sfu/rtpPortMax"),
    "udp-port": ({"sfu": {"udpPort": 70000}}, "/sfu/udpPort"),
    "tcp-port": ({"sfu": {"tcpPort": 70000}}, "/sfu/tcpPort"),
    "tcp-port-type": ({"sfu": {"tcpPort": "7881"}}, "/sfu/tcpPort"),
    "workers-zero": ({"sfu": {"workers": 0}}, "/sfu/workers"),
    "workers-word": ({"sfu": {"workers": "auto"}}, "/sfu/workers"),
    "host-network-type": ({"sfu": {"hostNetwork": "false"}}, "/sfu/hostNetwork"),
    "privileged-port": ({"sfu": {"port": 80}}, "/sfu/port"),
    "port-type": ({"signal": {"port": "8080"}}, "/signal/port"),
    "chain-mode": ({"chain": {"mode": "anvil"}}, "/chain/mode"),
    "log-level": ({"logLevel": "trace"}, "/logLevel"),
    "redis-url-scheme": (
        {"redis": {"bundled": {"enabled": False}, "external": {"url": "http://r"}}},
        "/redis/external/url",
    ),
    "typo": ({"sfu": {"replica": 3}}, "replica"),
    "batch-size": ({"sessions": {"batchSize": 500}}, "/sessions/batchSize"),
    "record": ({"sessions": {"record": "some"}}, "/sessions/record"),
    "turn-peer-range": ({"turn": {"allowedPeerRanges": ["10.0.0.0/8"]}}, "/turn/allowedPeerRanges/0"),
}


@pytest.mark.parametrize("values,where", SCHEMA_CASES.values(), ids=SCHEMA_CASES.keys())
def test_schema_rejects_bad_values(values, where):
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(where)):
        render_raw(values)


# --- Redis toggles ----------------------------------------------------------------------------------


def _redis_urls(docs: list[dict]) -> set[str]:
    return {resolve_env(c)["BASEMENT_REDIS_URL"] for _, c in all_containers(docs) if not c["name"].startswith("redis")}


def test_bundled_redis_by_default():
    docs = render()
    sts = one(docs, "StatefulSet", f"{FULL}-redis")
    svc = one(docs, "Service", f"{FULL}-redis")
    assert svc["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    (c,) = pod_spec(sts)["containers"]
    assert c["image"].startswith("redis:7")
    assert c["args"][c["args"].index("--save") + 1] == ""
    assert "volumeClaimTemplates" not in sts["spec"]
    assert _redis_urls(docs) == {f"redis://{FULL}-redis.{NAMESPACE}.svc:6379/0"}


def test_bundled_redis_persistence_and_password_from_an_existing_secret():
    docs = render(
        {
            "redis": {
                "bundled": {"persistence": {"enabled": True, "size": "5Gi"}, "auth": {"existingSecret": "redis-pw"}}
            }
        }
    )
    assert not find(docs, "Secret", f"{FULL}-redis-auth")
    sts = one(docs, "StatefulSet", f"{FULL}-redis")
    (vct,) = sts["spec"]["volumeClaimTemplates"]
    assert vct["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert all(v["name"] != "data" for v in pod_spec(sts)["volumes"])
    (c,) = pod_spec(sts)["containers"]
    assert "--save" not in c["args"] and c["args"][c["args"].index("--appendonly") + 1] == "yes"
    assert c["args"][c["args"].index("--appendfsync") + 1] == "always"  # the session outbox is acknowledged
    (init,) = pod_spec(sts)["initContainers"]
    assert env_of(init)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "redis-pw", "key": "redis-password"}
    for _, c in all_containers(docs):
        if c["name"].startswith(("sfu", "signal")):
            assert env_of(c)["BASEMENT_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "redis-pw"
    assert _redis_urls(docs) == {f"redis://{FULL}-redis.{NAMESPACE}.svc:6379/0"}


def test_external_redis_url_and_secret():
    docs = render({"redis": {"bundled": {"enabled": False}, "external": {"url": "rediss://cache.internal:6380/2"}}})
    assert not find(docs, "StatefulSet") and not find(docs, "Service", f"{FULL}-redis")
    assert _redis_urls(docs) == {"rediss://cache.internal:6380/2"}
    assert "External Redis" in notes(
        {"redis": {"bundled": {"enabled": False}, "external": {"url": "rediss://cache.internal:6380/2"}}}
    )

    docs = render({"redis": {"bundled": {"enabled": False}, "external": {"existingSecret": "redis-url"}}})
    assert not find(docs, "StatefulSet")
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for _, c in all_containers(docs)
        for e in c["env"]
        if e["name"] == "BASEMENT_REDIS_URL"
    }
    assert refs == {"redis-url"}


# --- monitoring and NOTES ---------------------------------------------------------------------------


def test_service_monitors_cover_signal_and_sfu():
    docs = render({"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}})
    sms = {d["metadata"]["name"]: d for d in find(docs, "ServiceMonitor")}
    assert set(sms) == {f"{FULL}-signal", f"{FULL}-sfu"}
    for sm in sms.values():
        check_service_monitor(sm, docs)
        assert sm["metadata"]["labels"]["release"] == "prom"


def test_notes_give_next_steps():
    text = notes()
    assert "port-forward svc/basement-signal" in text
    assert "UDP 50000-50999" in text
    assert "SIGTERM" in text and "3570 s" in text
    # A DaemonSet pod ignores cordon/drain: NOTES must say how to take the node out instead.
    assert "basement.io/drain=true:NoExecute" in text and "kubectl cordon" not in text
    labelled = notes({"sfu": {"nodeSelector": {"basement.io/media": "true"}}})
    assert "kubectl label node <node> basement.io/media-" in labelled
    deployment = notes({"sfu": {"kind": "Deployment"}})
    assert "kubectl cordon <node>" in deployment and "NoExecute" not in deployment
    assert "docs/operations.md" in text
    # recording sessions through a Redis that keeps nothing on disk is said out loud
    assert "Set redis.bundled.persistence.enabled=true" not in text  # the embedded chain records nothing lasting
    volatile = notes({"chain": RPC_CHAIN})
    assert "Set redis.bundled.persistence.enabled=true" in volatile
    assert "persistence.enabled=true" not in notes({"chain": RPC_CHAIN,
                                                    "redis": {"bundled": {"persistence": {"enabled": True}}}})


# --- hardening (issue #11): Redis auth and TLS, NetworkPolicies, what is exposed where ------------


def test_bundled_redis_requires_a_generated_password_that_is_in_no_argv():
    raw = render_raw()
    docs = render()
    secret = one(docs, "Secret", f"{FULL}-redis-auth")
    password = base64.b64decode(secret["data"]["redis-password"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{48}", password)
    assert password != base64.b64decode(one(render(), "Secret", f"{FULL}-redis-auth")["data"]["redis-password"])
    # the clear password is nowhere in the manifests, and no process gets it (or any) on its command line
    assert all(password not in text for text in raw.values())
    for wl, c in all_containers(docs):
        argv = " ".join(c.get("command", []) + c.get("args", []))
        assert "requirepass" not in argv.replace("printf 'requirepass", ""), (wl["metadata"]["name"], c["name"])
        assert "protected-mode" not in argv
    sts = one(docs, "StatefulSet", f"{FULL}-redis")
    ref = {"name": f"{FULL}-redis-auth", "key": "redis-password"}
    (init,) = pod_spec(sts)["initContainers"]
    assert env_of(init)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == ref
    (redis_c,) = pod_spec(sts)["containers"]
    assert env_of(redis_c)["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == ref
    auth_volume = next(v for v in pod_spec(sts)["volumes"] if v["name"] == "auth")
    assert auth_volume["emptyDir"]["medium"] == "Memory"
    for _, c in all_containers(docs):
        if c["name"].startswith(("sfu", "signal")):
            assert env_of(c)["BASEMENT_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == ref
            assert config.load(env=resolve_env(c)).redis_password == "s3cret"



def test_the_rendered_redis_command_requires_the_password(tmp_path):
    """Run the chart's own init script and redis-server command line (paths moved to tmp_path)."""
    import subprocess

    import redis as redis_sync

    sts = one(render(), "StatefulSet", f"{FULL}-redis")
    (init,) = pod_spec(sts)["initContainers"]
    (c,) = pod_spec(sts)["containers"]
    auth_dir, data_dir = tmp_path / "auth", tmp_path / "data"
    auth_dir.mkdir()
    data_dir.mkdir()
    script = init["args"][0].replace("/run/redis-auth", str(auth_dir))
    for bad in ("", "has space", "quote'd"):
        refused = subprocess.run([*init["command"], script], env={"REDIS_PASSWORD": bad, "PATH": "/usr/bin:/bin"},
                                 capture_output=True, text=True)
        assert refused.returncode == 1 and "redis password" in refused.stderr, bad
    password = "Pa55-word.~_" + "x" * 20
    subprocess.run([*init["command"], script], env={"REDIS_PASSWORD": password, "PATH": "/usr/bin:/bin"}, check=True)
    assert (auth_dir / "auth.conf").stat().st_mode & 0o077 == 0
    port = free_port()
    argv = [a.replace("/run/redis-auth", str(auth_dir)).replace("/data", str(data_dir)) for a in c["args"]]
    argv[argv.index("--port") + 1] = str(port)
    assert password not in " ".join(argv)
    proc = subprocess.Popen([*c["command"], *argv, "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        import time

        deadline = time.monotonic() + 10
        while True:
            try:
                assert redis_sync.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=1).ping()
                break
            except redis_sync.exceptions.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
                time.sleep(0.05)
        with pytest.raises(redis_sync.exceptions.AuthenticationError):
            redis_sync.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping()
        with pytest.raises(redis_sync.exceptions.AuthenticationError):
            redis_sync.Redis(host="127.0.0.1", port=port, password="wrong", socket_timeout=1).ping()
    finally:
        proc.kill()
        proc.wait(10)


def _selects(selector: dict, labels: dict) -> bool:
    return selector.get("matchLabels", {}).items() <= labels.items() and "matchExpressions" not in selector


def _pod_labels(docs: list[dict], kind: str, name: str) -> dict:
    return one(docs, kind, name)["spec"]["template"]["metadata"]["labels"]


def test_network_policies_admit_only_basement_pods_to_redis_and_the_ingress_to_signalling():
    docs = render()
    redis_labels = _pod_labels(docs, "StatefulSet", f"{FULL}-redis")
    signal_labels = _pod_labels(docs, "Deployment", f"{FULL}-signal")
    sfu_labels = sfu_workload(docs)["spec"]["template"]["metadata"]["labels"]
    policies = {p["metadata"]["name"]: p["spec"] for p in find(docs, "NetworkPolicy")}
    assert set(policies) == {f"{FULL}-redis", f"{FULL}-signal"}

    redis_np = policies[f"{FULL}-redis"]
    assert _selects(redis_np["podSelector"], redis_labels) and redis_np["policyTypes"] == ["Ingress"]
    (rule,) = redis_np["ingress"]
    assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}]
    assert all(set(peer) == {"podSelector"} for peer in rule["from"]), "pods of this release only"
    admitted = [lab for lab in (signal_labels, sfu_labels, redis_labels, {"app": "other"})
                if any(_selects(peer["podSelector"], lab) for peer in rule["from"])]
    assert admitted == [signal_labels, sfu_labels]

    signal_np = policies[f"{FULL}-signal"]
    assert _selects(signal_np["podSelector"], signal_labels)
    by_port = {r["ports"][0]["port"]: r.get("from") for r in signal_np["ingress"]}
    assert by_port == {
        "http": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
        "metrics": [{"namespaceSelector": {}}],
    }
    # host-network pods are outside NetworkPolicy: no policy pretends to cover the SFU; NOTES say so
    assert not any(_selects(p["podSelector"], sfu_labels) for p in policies.values())
    assert "NetworkPolicy does not cover them" in notes()
    assert "networkPolicy.sfuNodeCIDRs" in notes()

    cidrs = render({"networkPolicy": {"sfuNodeCIDRs": ["10.0.16.0/20", "fd00::/64"]}})
    (rule,) = one(cidrs, "NetworkPolicy", f"{FULL}-redis")["spec"]["ingress"]
    assert [p["ipBlock"]["cidr"] for p in rule["from"] if "ipBlock" in p] == ["10.0.16.0/20", "fd00::/64"]
    assert not find(render({"networkPolicy": {"enabled": False}}), "NetworkPolicy")
    external = render({"redis": {"bundled": {"enabled": False}, "external": {"url": "redis://r:6379/0"}}})
    assert [p["metadata"]["name"] for p in find(external, "NetworkPolicy")] == [f"{FULL}-signal"]


def test_redis_tls_option_wires_rediss_and_the_ca_into_every_basement_pod():
    docs = render({"redis": {"tls": {"enabled": True, "existingSecret": "redis-tls"}}})
    sts = one(docs, "StatefulSet", f"{FULL}-redis")
    (c,) = pod_spec(sts)["containers"]
    args = c["args"]
    assert args[args.index("--port") + 1] == "0" and args[args.index("--tls-port") + 1] == "6379"
    assert args[args.index("--tls-cert-file") + 1] == "/tls/tls.crt"
    assert "--tls" in c["readinessProbe"]["exec"]["command"]
    tls_volume = next(v for v in pod_spec(sts)["volumes"] if v["name"] == "tls")
    assert tls_volume["secret"]["secretName"] == "redis-tls"
    assert _redis_urls(docs) == {f"rediss://{FULL}-redis.{NAMESPACE}.svc:6379/0"}
    for wl, c in all_containers(docs):
        if not c["name"].startswith(("sfu", "signal")):
            continue
        env = resolve_env(c)
        mount = next(m for m in c["volumeMounts"] if m["name"] == "redis-ca")
        assert env["BASEMENT_REDIS_SSL_CA_CERTS"] == mount["mountPath"] + "/ca.crt"
        volume = next(v for v in pod_spec(wl)["volumes"] if v["name"] == "redis-ca")
        assert volume["secret"] == {"secretName": "redis-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
        s = config.load(env=env)
        from signalling.cluster.redisconn import target_from_settings

        assert target_from_settings(s).options() == {"password": "s3cret",
                                                      "ssl_ca_certs": "/etc/basement/redis-ca/ca.crt"}
    external = render({"redis": {"bundled": {"enabled": False}, "tls": {"enabled": True},
                                 "external": {"url": "rediss://cache:6380/0",
                                              "passwordSecret": {"existingSecret": "cache-pw"}}}})
    for _, c in all_containers(external):
        env = env_of(c)
        assert "BASEMENT_REDIS_SSL_CA_CERTS" not in env  # no CA Secret: the system CAs
        assert env["BASEMENT_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "cache-pw",
                                                                               "key": "redis-password"}


def _routes(path: str, rule_path: dict) -> bool:
    """Kubernetes Ingress matching: Exact, or Prefix by whole path elements."""
    if rule_path["pathType"] == "Exact":
        return path == rule_path["path"]
    prefix = rule_path["path"].rstrip("/")
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


@pytest.mark.parametrize("values_file", VALUE_SETS)
def test_admin_api_probes_and_metrics_stay_off_the_public_ingress(values_file):
    values = merge(values_of(values_file),
                   {"admin": {"enabled": True, "existingSecret": "adm"}, "signal": {"ingress": {"enabled": True}}})
    (ing,) = find(render(values), "Ingress")
    paths = [p for rule in ing["spec"]["rules"] for p in rule["http"]["paths"]]
    for private in ("/admin", "/admin/rooms", "/healthz", "/readyz", "/metrics"):
        assert not any(_routes(private, p) for p in paths), private
    for public in ("/", "/ws", "/static/app.js", "/auth/nonce", "/auth/siwe", "/api/info"):
        assert any(_routes(public, p) for p in paths), public
    exposed = merge(values, {"signal": {"ingress": {"exposeAdmin": True}}})
    (ing,) = find(render(exposed), "Ingress")
    assert any(_routes("/admin/rooms", p) for rule in ing["spec"]["rules"] for p in rule["http"]["paths"])


HARDENING_FAIL_CASES = {
    "catch-all-path-with-admin": (
        {"admin": {"enabled": True, "existingSecret": "adm"},
         "signal": {"ingress": {"enabled": True,
                                "hosts": [{"host": "h", "paths": [{"path": "/", "pathType": "Prefix"}]}]}}},
        "signal.ingress: path / (Prefix) routes the admin API",
    ),
    "bundled-tls-without-cert": ({"redis": {"tls": {"enabled": True}}}, "redis.tls.enabled with the bundled Redis"),
    "tls-with-plain-url": (
        {"redis": {"bundled": {"enabled": False}, "tls": {"enabled": True}, "external": {"url": "redis://r:6379/0"}}},
        "redis.tls.enabled needs a rediss:// redis.external.url",
    ),
    "password-in-plain-url": (
        {"redis": {"bundled": {"enabled": False}, "external": {"url": "redis://:hunter2@r:6379/0"}}},
        "redis.external.url carries a password",
    ),
}


@pytest.mark.parametrize("values,message", HARDENING_FAIL_CASES.values(), ids=HARDENING_FAIL_CASES.keys())
def test_hardening_fail_guards(values, message):
    with pytest.raises(helm_python.HelmRenderError, match=re.escape(message)):
        render_raw(values)


def test_disabling_redis_auth_is_loud():
    docs = render({"redis": {"bundled": {"auth": {"enabled": False}}}})
    assert not find(docs, "Secret", f"{FULL}-redis-auth")
    (c,) = pod_spec(one(docs, "StatefulSet", f"{FULL}-redis"))["containers"]
    assert c["args"][c["args"].index("--protected-mode") + 1] == "no"
    assert "WARNING: redis.bundled.auth.enabled=false" in notes({"redis": {"bundled": {"auth": {"enabled": False}}}})
