"""deploy/ matches the code: every manifest parses; the service names, queues, users,
passwords and metrics ports in docker-compose, Prometheus, Kubernetes, KEDA and the RabbitMQ
definitions are those of the workers found under services/; each service's broker user
reaches its own queues but no other service's; the policies cannot override the queue
arguments the framework declares; the Grafana dashboard only uses metrics framework/ops/metrics.py
defines. Nothing here talks to Docker or a cluster: it reads files."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from framework.consume.shutdown import CLOSE_MARGIN
from framework.consume.worker_spec import build_spec
from framework.contracts.discovery import discover
from framework.ops.metrics import Metrics
from framework.wire import names
from framework.worker import Worker

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
STORE_FILE = "idempotency-store.yaml"  # the shared idempotency store of every Deployment
SHARED_STORE_SCHEMES = {"redis", "rediss", "postgresql", "postgres"}
WORKERS: tuple[type[Worker], ...] = discover(("services",)).workers
SERVICES = sorted({str(w.service) for w in WORKERS})
DEFINITIONS = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())
PERMISSIONS = {p["user"]: p for p in DEFINITIONS["permissions"]}
USERS = {u["name"]: u for u in DEFINITIONS["users"]}
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
PROMETHEUS = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
DASHBOARD = json.loads((DEPLOY / "grafana" / "framework-dashboard.json").read_text())

# Workers that must run as one replica, and why (their ScaledObject caps them at 1). None
# today: `notifications` keeps a process-local replica, fed from a queue of each instance's
# own (Replica.feeding), so every replica process gets every customer event.
SINGLE_REPLICA: dict[str, str] = {}
# Policy keys that cannot override or tighten what framework/wire/topology.py declares (see
# deploy/rabbitmq/rabbitmq.conf). `delivery-limit` is resolved as the lower of policy and
# argument, so it is allowed only as a ceiling at or above every worker's delivery_limit.
SAFE_POLICY_KEYS = {"delivery-limit", "queue-leader-locator"}


def worker_id(worker: type[Worker]) -> str:
    return worker.__name__


def component(worker: type[Worker]) -> str:
    """The compose service / Deployment / ScaledObject name of a worker."""
    return worker.queue.replace(".", "-")


def target(worker: type[Worker]) -> str:
    return f"{worker.__module__}:{worker.__name__}"


def queues_of_worker(worker: type[Worker]) -> list[str]:
    """Main queue, DLQ and every delay tier of one worker."""
    spec = build_spec(worker)
    return [
        spec.queue,
        names.dlq_name(spec.queue),
        *(names.retry_queue_name(spec.queue, t) for t in spec.policy.tiers_ms()),
    ]


def queues_of(service: str) -> list[str]:
    return [q for w in WORKERS if w.service == service for q in queues_of_worker(w)]


ALL_QUEUES = [q for w in WORKERS for q in queues_of_worker(w)]


def allows(user: str, kind: str, resource: str) -> bool:
    return re.fullmatch(PERMISSIONS[user][kind], resource) is not None


def password_matches(user: str, password: str) -> bool:
    """definitions.json hashes are rabbit_password_hashing_sha256: base64(salt + sha256)."""
    entry = USERS[user]
    assert entry["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    raw = base64.b64decode(entry["password_hash"])
    salt, digest = raw[:4], raw[4:]
    return hashlib.sha256(salt + password.encode()).digest() == digest


def credentials(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return unquote(parts.username or ""), unquote(parts.password or "")


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def shutdown_bound(worker: type[Worker], configured: str | None) -> float:
    """The longest a stop of `worker` takes: its grace (FRAMEWORK_SHUTDOWN_GRACE if the
    manifest sets it, else the class's shutdown_grace) plus the closing margin."""
    grace = float(configured) if configured is not None else build_spec(worker).shutdown_grace
    return grace + CLOSE_MARGIN


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def conf_settings(text: str) -> dict[str, str]:
    """key = value lines of a rabbitmq.conf (sysctl format), comments dropped."""
    settings = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, value = (part.strip() for part in line.split("=", 1))
            settings[key] = value
    return settings


def compose_port(worker: type[Worker]) -> int:
    return int(COMPOSE["services"][component(worker)]["environment"]["FRAMEWORK_METRICS_PORT"])


def test_workers_are_discovered() -> None:
    """The checks below run over what services/ defines, not over a list kept here."""
    assert len(WORKERS) >= 3
    assert all(w.service for w in WORKERS), "every example worker names its service"
    assert len({component(w) for w in WORKERS}) == len(WORKERS)


# ---- every file parses ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")]),
    ids=lambda p: str(p.relative_to(DEPLOY)),
)
def test_yaml_parses(path: Path) -> None:
    """Every YAML file is valid YAML (all documents) with at least one document."""
    assert documents(path)


@pytest.mark.parametrize(
    "path", sorted(DEPLOY.rglob("*.json")), ids=lambda p: str(p.relative_to(DEPLOY))
)
def test_json_parses(path: Path) -> None:
    assert json.loads(path.read_text())


@pytest.mark.parametrize("path", sorted(K8S.glob("*.y*ml")), ids=lambda p: p.name)
def test_k8s_documents_are_objects(path: Path) -> None:
    for doc in documents(path):
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), doc
        assert doc["metadata"].get("name")


# ---- RabbitMQ users and permissions -----------------------------------------------------


SHARED_EXCHANGES = (names.COMMANDS_EXCHANGE, names.EVENTS_EXCHANGE, names.LOAD_EXCHANGE)


def test_service_user_may_follow_load_reports() -> None:
    """With shedding by forecast, a bus of service S follows fw.load with its own exclusive
    queue `S.load.<random>`: inside S's configure, write and read rights."""
    from framework.resilience.load_status import LoadFollower

    for service in SERVICES:
        queue = LoadFollower(service).queue_name
        for kind in ("configure", "write", "read"):
            assert allows(service, kind, queue), (service, kind, queue)


def moves_of(service: str) -> list[str]:
    return [names.moves_exchange(w.queue) for w in WORKERS if w.service == service]


@pytest.mark.parametrize("service", SERVICES)
def test_service_user_reaches_its_own_queues_and_the_exchanges(service: str) -> None:
    """Declare, publish to and consume its queues and its own moves exchanges (retry and
    DLQ moves); publish to and bind from fw.commands/fw.events/fw.load (load reports)."""
    assert service in USERS and USERS[service]["tags"] == []
    for resource in (*queues_of(service), *moves_of(service)):
        for kind in ("configure", "write", "read"):
            assert allows(service, kind, resource), (service, kind, resource)
    for exchange in SHARED_EXCHANGES:
        for kind in ("write", "read"):
            assert allows(service, kind, exchange), (service, kind, exchange)


@pytest.mark.parametrize("service", SERVICES)
def test_service_user_cannot_delete_shared_exchanges_or_use_the_default_one(
    service: str,
) -> None:
    """No configure on fw.commands/fw.events/fw.load (configure is what deleting needs; an
    admin creates them); no write on amq.default, which would reach every queue of the vhost."""
    for exchange in SHARED_EXCHANGES:
        assert not allows(service, "configure", exchange), (service, exchange)
    assert not allows(service, "write", "amq.default"), service


@pytest.mark.parametrize("service", SERVICES)
def test_service_user_cannot_touch_other_services_queues(service: str) -> None:
    """Least privilege: no configure, write or read on any queue or moves exchange of
    another service."""
    for other in SERVICES:
        if other == service:
            continue
        for resource in (*queues_of(other), *moves_of(other)):
            for kind in ("configure", "write", "read"):
                assert not allows(service, kind, resource), (service, kind, resource)


def test_keda_user_only_monitors() -> None:
    """KEDA reads depths through the management API: tag monitoring, no AMQP rights."""
    assert USERS["keda"]["tags"] == ["monitoring"]
    for resource in (*ALL_QUEUES, *SHARED_EXCHANGES, "amq.default"):
        for kind in ("configure", "write", "read"):
            assert not allows("keda", kind, resource), (kind, resource)


def test_no_user_without_a_purpose() -> None:
    assert set(USERS) == {*SERVICES, "keda", "admin"}
    assert set(PERMISSIONS) == set(USERS)
    assert "guest" not in USERS


def test_definitions_declare_the_framework_exchanges() -> None:
    exchanges = {e["name"]: e["type"] for e in DEFINITIONS["exchanges"]}
    assert exchanges == {
        names.COMMANDS_EXCHANGE: "direct",
        names.EVENTS_EXCHANGE: "topic",
        names.LOAD_EXCHANGE: "topic",
    }
    assert DEFINITIONS["queues"] == [], "queues are declared by the workers, with arguments"


# ---- policies ---------------------------------------------------------------------------


def effective_policy(queue: str) -> dict[str, Any] | None:
    """The policy RabbitMQ applies to `queue`: the highest-priority match."""
    matching = [
        p
        for p in DEFINITIONS["policies"]
        if p["apply-to"] in ("queues", "quorum_queues", "all") and re.search(p["pattern"], queue)
    ]
    if not matching:
        return None
    top = max(p["priority"] for p in matching)
    winners = [p for p in matching if p["priority"] == top]
    assert len(winners) == 1, f"{queue}: policies tie at priority {top}: ambiguous"
    winner: dict[str, Any] = winners[0]
    return winner


def test_policies_only_set_keys_that_cannot_override_the_framework() -> None:
    """No overflow, max-length, message-ttl, expires, dead-letter-* or queue-mode."""
    assert DEFINITIONS["policies"]
    for policy in DEFINITIONS["policies"]:
        assert set(policy["definition"]) <= SAFE_POLICY_KEYS, policy["name"]
        assert any(re.search(policy["pattern"], q) for q in ALL_QUEUES), (
            f"policy {policy['name']} matches no framework queue"
        )


@pytest.mark.parametrize("worker", WORKERS, ids=worker_id)
def test_every_framework_queue_has_its_policy(worker: type[Worker]) -> None:
    """Worker queues get the worker policy; DLQ and retry queues the companion one; a
    delivery-limit in a policy never undercuts the worker's own (the lower one wins)."""
    spec = build_spec(worker)
    for queue in queues_of_worker(worker):
        policy = effective_policy(queue)
        assert policy is not None, queue
        expected = "fw-worker-queues" if queue == spec.queue else "fw-companion-queues"
        assert policy["name"] == expected, (queue, policy["name"])
    main = effective_policy(spec.queue)
    assert main is not None
    declared = dict(next(q for q in spec.topology.queues if q.name == spec.queue).arguments)
    ceiling = main["definition"].get("delivery-limit")
    assert ceiling is None or ceiling >= declared["x-delivery-limit"]
    dlq = effective_policy(names.dlq_name(spec.queue))
    assert dlq is not None and "delivery-limit" not in dlq["definition"], (
        "a delivery limit on a DLQ (which has no dead-letter target) would drop dead letters"
    )


# ---- rabbitmq.conf ----------------------------------------------------------------------


def test_rabbitmq_conf_loads_the_definitions_and_the_prometheus_plugin() -> None:
    conf = conf_settings((DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text())
    assert conf["load_definitions"] == "/etc/rabbitmq/definitions.json"
    timeout_ms = int(conf["consumer_timeout"])
    assert all(build_spec(w).timeout * 1000 < timeout_ms for w in WORKERS)
    plugins = (DEPLOY / "rabbitmq" / "enabled_plugins").read_text()
    assert "rabbitmq_management" in plugins and "rabbitmq_prometheus" in plugins
    mounts = COMPOSE["services"]["rabbitmq"]["volumes"]
    assert f"./rabbitmq/definitions.json:{conf['load_definitions']}:ro" in mounts
    assert "./rabbitmq/rabbitmq.conf:/etc/rabbitmq/rabbitmq.conf:ro" in mounts
    assert "./rabbitmq/enabled_plugins:/etc/rabbitmq/enabled_plugins:ro" in mounts


# ---- docker-compose ---------------------------------------------------------------------


def test_compose_has_one_container_per_worker_and_nothing_unknown() -> None:
    infrastructure = {"rabbitmq", "redis", "prometheus", "grafana"}
    assert set(COMPOSE["services"]) == infrastructure | {component(w) for w in WORKERS}


@pytest.mark.parametrize("worker", WORKERS, ids=worker_id)
def test_compose_service(worker: type[Worker]) -> None:
    """Runs the worker as its service's user, with a metrics port, a /healthz healthcheck,
    after RabbitMQ is healthy, with time to drain on stop."""
    svc = COMPOSE["services"][component(worker)]
    assert svc["command"] == ["run", target(worker)]
    user, password = credentials(svc["environment"]["AMQP_URL"])
    assert user == worker.service
    assert password_matches(user, password), f"{user}: password does not match its hash"
    port = compose_port(worker)
    check = " ".join(svc["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/healthz" in check
    assert svc["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    store = urlsplit(svc["environment"]["FRAMEWORK_IDEMPOTENCY_URL"])
    assert store.scheme in SHARED_STORE_SCHEMES, "replicas need a shared idempotency store"
    assert store.hostname in COMPOSE["services"]
    assert svc["depends_on"][store.hostname]["condition"] == "service_healthy"
    grace = int(svc["stop_grace_period"].rstrip("s"))
    assert grace > shutdown_bound(worker, svc["environment"].get("FRAMEWORK_SHUTDOWN_GRACE"))


def test_metrics_ports_are_distinct() -> None:
    ports = [compose_port(w) for w in WORKERS]
    assert len(set(ports)) == len(ports)


def test_prometheus_scrapes_rabbitmq_and_every_worker() -> None:
    targets = {
        (job["job_name"], target)
        for job in PROMETHEUS["scrape_configs"]
        for group in job.get("static_configs", [])
        for target in group["targets"]
    }
    assert ("rabbitmq", "rabbitmq:15692") in targets
    workers = {t for job, t in targets if job == "framework-workers"}
    assert workers == {f"{component(w)}:{compose_port(w)}" for w in WORKERS}
    assert (
        "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
        in COMPOSE["services"]["prometheus"]["volumes"]
    )


def test_grafana_is_provisioned_with_the_dashboard() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    datasources = documents(provisioning / "datasources" / "prometheus.yml")[0]["datasources"]
    assert [d["type"] for d in datasources] == ["prometheus"]
    assert datasources[0]["url"] == "http://prometheus:9090"
    providers = documents(provisioning / "dashboards" / "framework.yml")[0]["providers"]
    path = providers[0]["options"]["path"]
    mounts = COMPOSE["services"]["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    assert f"./grafana/framework-dashboard.json:{path}/framework-dashboard.json:ro" in mounts


# ---- Grafana dashboard ------------------------------------------------------------------

_PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}


def defined_metric_names() -> set[str]:
    """Every series name the Metrics registry can expose (counter and histogram suffixes)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
    }
    return {
        family.name + suffix
        for family in Metrics().registry.collect()
        for suffix in suffixes[family.type]
    }


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels, ranges removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    tokens = re.findall(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr)
    return {t for t in tokens if t.lower() not in _PROMQL_WORDS}


def dashboard_queries() -> list[str]:
    exprs = [t["expr"] for p in DASHBOARD["panels"] for t in p.get("targets", [])]
    for variable in DASHBOARD.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            exprs.append(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", text))
    return exprs


def test_metric_name_extraction() -> None:
    assert metric_names(
        "histogram_quantile(0.99, sum by (queue, le) "
        '(rate(framework_handler_duration_seconds_bucket{queue=~"$queue"}[5m])))'
    ) == {"framework_handler_duration_seconds_bucket"}


def test_dashboard_only_uses_metrics_the_framework_defines() -> None:
    defined = defined_metric_names()
    used = set().union(*(metric_names(e) for e in dashboard_queries()))
    assert used, "the dashboard queries no metric"
    assert used <= defined, sorted(used - defined)
    families = {f.name for f in Metrics().registry.collect()}
    shown = {f for f in families if any(u.startswith(f) for u in used)}
    assert shown == families, f"metrics not on the dashboard: {sorted(families - shown)}"


# ---- Kubernetes and KEDA ----------------------------------------------------------------


def test_one_k8s_file_per_service() -> None:
    assert {p.name for p in K8S.iterdir()} == {f"{s}.yaml" for s in SERVICES} | {
        "rabbitmq-cluster.yaml",
        STORE_FILE,
    }


def test_k8s_has_nothing_for_unknown_workers() -> None:
    scaled = {
        d["metadata"]["name"]
        for p in K8S.glob("*.yaml")
        for d in documents(p)
        if d["kind"] in ("Deployment", "ScaledObject") and p.name != STORE_FILE
    }
    assert scaled == {component(w) for w in WORKERS}


@pytest.mark.parametrize("worker", WORKERS, ids=worker_id)
def test_k8s_deployment(worker: type[Worker]) -> None:
    """Runs the worker from its service's Secret, probes /healthz and /readyz on the metrics
    port (the same port as in compose), has requests and limits, and outlasts the drain."""
    docs = documents(K8S / f"{worker.service}.yaml")
    deployment = find(docs, "Deployment", component(worker))
    pod = deployment["spec"]["template"]
    assert (
        deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    )
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["run", target(worker)]
    env = env_of(container)
    configured = env.get("FRAMEWORK_SHUTDOWN_GRACE", {}).get("value")
    assert pod["spec"]["terminationGracePeriodSeconds"] > shutdown_bound(worker, configured)
    ref = env["AMQP_URL"]["valueFrom"]["secretKeyRef"]
    secret = find(docs, "Secret", ref["name"])
    user, password = credentials(secret["stringData"][ref["key"]])
    assert user == worker.service and password_matches(user, password)
    store_ref = env["FRAMEWORK_IDEMPOTENCY_URL"]["valueFrom"]["secretKeyRef"]
    store_docs = documents(K8S / STORE_FILE)
    store = urlsplit(find(store_docs, "Secret", store_ref["name"])["stringData"][store_ref["key"]])
    assert store.scheme in SHARED_STORE_SCHEMES, "20 replicas need a shared idempotency store"
    service = find(store_docs, "Service", str(store.hostname))
    assert store.port in {p["port"] for p in service["spec"]["ports"]}
    port = int(env["FRAMEWORK_METRICS_PORT"]["value"])
    assert port == compose_port(worker)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == port
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert get["port"] in ("metrics", port)
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= container["resources"][bound].keys()


@pytest.mark.parametrize("worker", WORKERS, ids=worker_id)
def test_keda_scaled_object(worker: type[Worker]) -> None:
    """Scales the worker's Deployment on the length of its queue, authenticated as `keda`."""
    docs = documents(K8S / f"{worker.service}.yaml")
    scaled = find(docs, "ScaledObject", component(worker))["spec"]
    assert scaled["scaleTargetRef"]["name"] == component(worker)
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    if worker.queue in SINGLE_REPLICA:
        assert scaled["maxReplicaCount"] == 1, SINGLE_REPLICA[worker.queue]
    else:
        assert scaled["maxReplicaCount"] > 1, "every example worker scales out"
    triggers = scaled["triggers"]
    assert {t["type"] for t in triggers} == {"rabbitmq"}
    assert {t["metadata"]["queueName"] for t in triggers} == {worker.queue}
    assert "QueueLength" in {t["metadata"]["mode"] for t in triggers}
    cluster = documents(K8S / "rabbitmq-cluster.yaml")
    for trigger in triggers:
        assert trigger["metadata"]["vhostName"] == "/"
        auth = find(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        (ref,) = auth["spec"]["secretTargetRef"]
        assert ref["parameter"] == "host"
        host = find(cluster, "Secret", ref["name"])["stringData"][ref["key"]]
        assert host.startswith(f"{trigger['metadata']['protocol']}://")
        user, password = credentials(host)
        assert user == "keda" and password_matches(user, password)


def test_idempotency_store_serves_its_service() -> None:
    """The shared store's Service selects its Deployment's pods on the port they listen on,
    and its data outlives a pod (a volume claim, append-only file)."""
    docs = documents(K8S / STORE_FILE)
    service = find(docs, "Service", "framework-idempotency")["spec"]
    deployment = find(docs, "Deployment", "framework-idempotency")["spec"]
    pod = deployment["template"]
    assert service["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    for port in service["ports"]:
        assert named[port["targetPort"]] == port["port"]
    assert "--appendonly" in container["args"]
    (volume,) = pod["spec"]["volumes"]
    find(docs, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= container["resources"][bound].keys()


def test_rabbitmq_cluster() -> None:
    """3 replicas, the Prometheus plugin, the definitions file imported unchanged, and the
    same settings as deploy/rabbitmq/rabbitmq.conf."""
    docs = documents(K8S / "rabbitmq-cluster.yaml")
    (cluster,) = [d for d in docs if d["kind"] == "RabbitmqCluster"]
    spec = cluster["spec"]
    assert cluster["apiVersion"] == "rabbitmq.com/v1beta1"
    assert spec["replicas"] == 3
    assert "rabbitmq_prometheus" in spec["rabbitmq"]["additionalPlugins"]
    settings = conf_settings(spec["rabbitmq"]["additionalConfig"])
    conf = conf_settings((DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text())
    assert settings.items() <= conf.items()
    assert {"load_definitions", "consumer_timeout"} <= settings.keys()
    pod = spec["override"]["statefulSet"]["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "rabbitmq"]
    (mount,) = [
        m for m in container["volumeMounts"] if m["mountPath"] == settings["load_definitions"]
    ]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    secret = find(docs, "Secret", volume["secret"]["secretName"])
    embedded = secret["stringData"][mount["subPath"]]
    assert embedded == (DEPLOY / "rabbitmq" / "definitions.json").read_text(), (
        "the Secret must carry deploy/rabbitmq/definitions.json unchanged"
    )
    # every service's AMQP_URL points at the cluster's Service
    for service in SERVICES:
        url = find(documents(K8S / f"{service}.yaml"), "Secret", f"{service}-amqp")
        assert urlsplit(url["stringData"]["url"]).hostname == cluster["metadata"]["name"]
