"""The artefact tier, part 2: the generated Helm chart, linted, rendered and validated offline.

helm-python-sdk runs Helm's own code (lint in strict mode, render, values schema);
kubernetes-validate checks every rendered manifest, strictly, against the Kubernetes
schemas of a current release. Fast: no cluster and no container engine are needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from helpers import DEFAULT_SLUG, render

KUBERNETES_VERSION = latest_version()
RELEASE = "demo"
FULLNAME = f"{RELEASE}-{DEFAULT_SLUG}"
WARNING = 2  # lint message severities: 1 info, 2 warning, 3 error
# Custom resources that kubernetes-validate has no schema for, checked by hand below.
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}


VARIANTS = {
    "plain": {},
    "backed": {"database": "postgresql", "cache": "redis"},
    # A broker brings the worker; with a database, its outbox too.
    "rabbitmq": {"database": "postgresql", "broker": "rabbitmq"},
    "nats": {"broker": "nats"},
}
WORKER_ARGS = ["worker"]
# Every container of the service names its settings file by this variable (not by --config), so
# that every process in it reads the file: the image's HEALTHCHECK, kubectl exec ... config show.
CONFIG_ENV = {"name": "MY_SERVICE_CONFIG", "value": "/etc/service/settings.yml"}


@pytest.fixture(scope="module", params=list(VARIANTS))
def chart(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """The chart of a project without backing services, with PostgreSQL and Redis, and with each broker."""
    result = render(tmp_path_factory.mktemp(request.param), VARIANTS[request.param])
    assert result.returncode == 0, result.stderr
    return result.project() / "charts" / DEFAULT_SLUG


def broker_of(chart: Path) -> str:
    """The broker answer of the chart's project (rendered into a folder named after its variant)."""
    return VARIANTS[chart.parents[2].name.rstrip("0123456789")].get("broker", "none")


def variants(chart: Path) -> dict[str, dict[str, Any]]:
    """The default values and every ci/*-values.yaml (as Helm's chart-testing uses them)."""
    found = {"default": {}}
    for path in sorted((chart / "ci").glob("*-values.yaml")):
        found[path.name.removesuffix("-values.yaml")] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return found


def manifests(chart: Path, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    rendered = helm.Chart.load(chart).render(values, name=RELEASE, namespace="prod", is_install=True)
    documents = []
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            continue
        documents += [document for document in yaml.safe_load_all(text) if document]
    return documents


def of_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [document for document in documents if document["kind"] == kind]


def named(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(document for document in of_kind(documents, kind) if document["metadata"]["name"] == name)


def selects(match_labels: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a ``matchLabels`` selector (or a Service's selector) selects an object with ``labels``."""
    return all(labels.get(key) == value for key, value in match_labels.items())


def test_lint_is_clean_in_strict_mode(chart: Path) -> None:
    for name, values in variants(chart).items():
        report = helm.lint(chart, values, strict=True, kube_version=f"v{KUBERNETES_VERSION}.0")
        problems = [message for message in report["messages"] if message["severity"] >= WARNING]
        assert (report["errors"], problems) == ([], []), name


def test_every_variant_renders_valid_kubernetes_manifests(chart: Path) -> None:
    assert set(variants(chart)) >= {
        "default", "hpa", "servicemonitor", "networkpolicy", "ingress", "existingsecret", "secretfiles",
        "managementport",
    }
    for name, values in variants(chart).items():
        for document in manifests(chart, values):
            if document["kind"] in CUSTOM_KINDS:
                continue
            try:
                kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{name}: {document['kind']} {document['metadata']['name']}: {error}")
    print(f"\n[figures] chart: {len(variants(chart))} value sets, validated against Kubernetes {KUBERNETES_VERSION}")


def test_default_values_give_the_expected_objects(chart: Path) -> None:
    documents = manifests(chart)
    kinds = sorted(document["kind"] for document in documents)
    assert kinds == ["ConfigMap", "Deployment", "Pod", "PodDisruptionBudget", "Service", "ServiceAccount"]
    assert not [document for document in documents if "worker" in document["metadata"]["name"]], "worker is opt-in"
    for document in documents:
        labels = document["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == DEFAULT_SLUG
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["helm.sh/chart"] == f"{DEFAULT_SLUG}-0.1.0"
    test_pod = of_kind(documents, "Pod")[0]
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"


def test_the_deployment_probes_secures_and_configures_the_pod(chart: Path) -> None:
    documents = manifests(chart)
    deployment = of_kind(documents, "Deployment")[0]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    probes = {name: container[f"{name}Probe"]["httpGet"]["path"] for name in ("liveness", "readiness", "startup")}
    assert probes == {"liveness": "/health/live", "readiness": "/health/ready", "startup": "/health/startup"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"requests", "limits"} <= set(container["resources"])
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert mounts == {"settings": "/etc/service", "tmp": "/tmp"}
    assert container["args"] == ["serve"]
    assert container["env"] == [CONFIG_ENV]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["settings"]["configMap"]["name"] == FULLNAME
    assert "emptyDir" in volumes["tmp"]
    assert pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"] == RELEASE
    # Longer than the service's drain delay (5) + grace period (25) + resource stops (10).
    assert pod["terminationGracePeriodSeconds"] > 40
    settings = yaml.safe_load(of_kind(documents, "ConfigMap")[0]["data"]["settings.yml"])
    assert settings["server"]["port"] == container["ports"][0]["containerPort"]
    assert settings["shutdown"] == {"delay": 5, "grace_period": 25}


def test_the_pods_memory_follows_the_workers_unless_given(chart: Path) -> None:
    """Each worker is a process: memory.baseMiB + memory.perWorkerMiB per server.workers, as request and limit."""
    values = yaml.safe_load((chart / "values.yaml").read_text(encoding="utf-8"))
    base, per_worker = values["memory"]["baseMiB"], values["memory"]["perWorkerMiB"]
    with_worker = broker_of(chart) != "none"
    with_database = "database" in variants(chart)

    def memory(extra: dict[str, Any]) -> dict[str, dict[str, str]]:
        """Each container's memory request and limit, by the name of its Deployment or Job."""
        values = {**extra, **({"worker": {"enabled": True}} if with_worker else {})}
        if with_database:
            values["migrations"] = {"enabled": True}
        documents = [*of_kind(manifests(chart, values), "Deployment"), *of_kind(manifests(chart, values), "Job")]
        return {
            document["metadata"]["name"]: {
                kind: document["spec"]["template"]["spec"]["containers"][0]["resources"][kind].get("memory")
                for kind in ("requests", "limits")
            }
            for document in documents
        }

    for workers in (None, 1, 2, 4):
        found = memory({"settings": {"server": {"workers": workers}}} if workers else {})
        expected = f"{base + per_worker * (workers or 1)}Mi"
        assert found.pop(FULLNAME) == {"requests": expected, "limits": expected}, workers
        if with_worker:
            assert found.pop(f"{FULLNAME}-worker") == {"requests": expected, "limits": expected}, workers
        if with_database:  # migrate is one process, whatever server.workers says
            single = f"{base + per_worker}Mi"
            assert found.pop(f"{FULLNAME}-migrate") == {"requests": single, "limits": single}, workers
        assert found == {}
    assert (base, per_worker) == (128, 96), "values.yaml's comment gives the measurements behind these"
    # Memory the values give is theirs, as Kubernetes reads it (a limit alone is the request too).
    given = memory({"settings": {"server": {"workers": 4}}, "resources": {"limits": {"memory": "1Gi"}}})
    assert given[FULLNAME] == {"requests": None, "limits": "1Gi"}
    if with_worker:
        assert given[f"{FULLNAME}-worker"] == {"requests": "512Mi", "limits": "512Mi"}, "the worker's own resources"
    for bad, complaint in (
        ({"settings": {"server": {"workers": "two"}}}, "workers"),
        ({"settings": {"server": {"workers": 0}}}, "workers"),
        ({"memory": {"baseMiB": 128, "perWorkerMiB": 0}}, "perWorkerMiB"),
    ):
        with pytest.raises(helm.HelmError, match=complaint):
            helm.Chart.load(chart).render(bad, name=RELEASE, namespace="prod")


def test_the_chart_knows_the_service_s_environment_prefix(chart: Path) -> None:
    """What the pods name the settings file by is the variable the service reads (its settings.py's prefix)."""
    metadata = yaml.safe_load((chart / "Chart.yaml").read_text(encoding="utf-8"))
    settings_module = (chart.parents[1] / "src" / DEFAULT_SLUG.replace("-", "_") / "settings.py").read_text(encoding="utf-8")
    assert f'ENV_PREFIX = "{metadata["annotations"]["settingsEnvPrefix"]}"' in settings_module
    assert CONFIG_ENV["name"] == f'{metadata["annotations"]["settingsEnvPrefix"]}_CONFIG'


def test_changed_settings_roll_the_pods(chart: Path) -> None:
    def checksum(values: dict[str, Any] | None) -> str:
        deployment = of_kind(manifests(chart, values), "Deployment")[0]
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/settings"]

    assert checksum(None) != checksum({"settings": {"logging": {"level": "debug"}}})


def test_variants_add_what_they_say(chart: Path) -> None:
    found = {name: manifests(chart, values) for name, values in variants(chart).items()}
    hpa = of_kind(found["hpa"], "HorizontalPodAutoscaler")[0]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert "replicas" not in of_kind(found["hpa"], "Deployment")[0]["spec"], "the autoscaler owns the replicas"
    monitor = of_kind(found["servicemonitor"], "ServiceMonitor")[0]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    relabel_job = [{"targetLabel": "job", "replacement": FULLNAME}]
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/internal/metrics", "interval": "30s", "relabelings": relabel_job}
    ], "one job name, which the alert rules select"
    rules = of_kind(found["monitoring"], "PrometheusRule")[0]
    assert rules["apiVersion"] == "monitoring.coreos.com/v1"
    assert rules["metadata"]["labels"]["release"] == "prometheus"
    alerts = [rule["alert"] for group in rules["spec"]["groups"] for rule in group["rules"] if "alert" in rule]
    with_outbox = "database" in VARIANTS[chart.parents[2].name.rstrip("0123456789")] and broker_of(chart) != "none"
    outbox = ["OutboxBacklogOld"] if with_outbox else []
    assert alerts == [
        "AvailabilityBudgetBurnFast", "AvailabilityBudgetBurnSlow", "LatencyBudgetBurnFast", "LatencyBudgetBurnSlow",
        "ReadinessFlapping", *outbox,
    ]  # fmt: skip
    assert not of_kind(manifests(chart), "PrometheusRule"), "off by default"
    dashboard = named(found["monitoring"], "ConfigMap", f"{FULLNAME}-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1", "what Grafana's sidecar looks for"
    board = json.loads(dashboard["data"][f"{FULLNAME}.json"])
    assert board["templating"]["list"][1] == {"name": "job", "type": "constant", "query": FULLNAME, "hide": 2}
    expressions = [target["expr"] for panel in board["panels"] for target in panel["targets"]]
    assert all("__" not in expression.replace("$__rate_interval", "") for expression in expressions)
    assert any('http_route!~"/health/.*|/internal/metrics"' in expression for expression in expressions)
    assert not [document for document in manifests(chart) if document["metadata"]["name"].endswith("-dashboard")]
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == RELEASE
    assert of_kind(found["networkpolicy"], "NetworkPolicy")[0]["spec"]["policyTypes"] == ["Ingress"]
    assert of_kind(found["ingress"], "Ingress")[0]["spec"]["rules"][0]["host"] == "api.example.com"
    container = of_kind(found["existingsecret"], "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "my-service-secrets"}}]
    assert [variable["name"] for variable in container["env"]] == [CONFIG_ENV["name"], "EXTRA_TOKEN"]
    configmap = of_kind(found["existingsecret"], "ConfigMap")[0]["data"]["settings.yml"]
    assert "my-service-secrets" not in configmap and "token" not in configmap, "no secret in the ConfigMap"
    secret = of_kind(found["secretenv"], "Secret")[0]
    assert secret["metadata"]["name"] == FULLNAME
    assert list(secret["stringData"]) == ["MY_SERVICE_TRACING_OTLP_ENDPOINT"]
    deployment = of_kind(found["secretenv"], "Deployment")[0]["spec"]["template"]
    assert deployment["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": FULLNAME}}]
    assert "checksum/secret" in deployment["metadata"]["annotations"], "a changed secret rolls the pods"


def test_the_database_variant_migrates_before_install_and_upgrade(chart: Path) -> None:
    found = variants(chart)
    if "database" not in found:
        assert not (chart / "templates" / "migration-job.yaml").exists()
        return
    documents = manifests(chart, found["database"])
    job = of_kind(documents, "Job")[0]
    hook_secret = next(doc for doc in of_kind(documents, "Secret") if doc["metadata"]["name"] != FULLNAME)
    for hook in (job, hook_secret):
        assert hook["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    ), "the Job's copy of the secret exists before the Job"
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    # The chart's ConfigMap is not there yet before an install: the Job reads a copy of it.
    hook_settings = named(documents, "ConfigMap", f"{FULLNAME}-migrate")
    assert hook_settings["metadata"]["annotations"] == hook_secret["metadata"]["annotations"]
    assert hook_settings["data"] == named(documents, "ConfigMap", FULLNAME)["data"]
    assert yaml.safe_load(hook_settings["data"]["settings.yml"])["database"] == found["database"]["settings"]["database"]
    assert container["args"] == ["migrate"]
    assert container["env"] == [CONFIG_ENV]
    assert {"name": "settings", "mountPath": "/etc/service", "readOnly": True} in container["volumeMounts"]
    assert {"name": "settings", "configMap": {"name": f"{FULLNAME}-migrate"}} in pod["volumes"]
    assert container["envFrom"] == [{"secretRef": {"name": hook_secret["metadata"]["name"]}}]
    assert "MY_SERVICE_DATABASE_URL" in hook_secret["stringData"]
    assert pod["restartPolicy"] == "Never"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert of_kind(manifests(chart), "Job") == [], "migrations are off by default"


def test_secret_files_are_mounted_into_every_pod_and_named_by_file_variables(chart: Path) -> None:
    found = variants(chart)
    values = found["secretfiles"]
    if "database" in found:
        values = {**values, "migrations": {"enabled": True}}
    if broker_of(chart) != "none":
        values = {**values, "worker": {"enabled": True}}
    documents = manifests(chart, values)
    pods = [document["spec"]["template"]["spec"] for document in of_kind(documents, "Deployment")]
    pods += [document["spec"]["template"]["spec"] for document in of_kind(documents, "Job")]
    assert len(pods) == 1 + ("database" in found) + (broker_of(chart) != "none")
    for pod in pods:
        container = pod["containers"][0]
        assert container["env"][:3] == [
            CONFIG_ENV,
            {"name": "MY_SERVICE_LOGGING_LEVEL_FILE", "value": "/run/secrets/service/log-level"},
            {"name": "MY_SERVICE_TRACING_OTLP_ENDPOINT_FILE", "value": "/run/secrets/service/otlp-endpoint"},
        ]
        mount = {"name": "secret-files", "mountPath": "/run/secrets/service", "readOnly": True}
        assert mount in container["volumeMounts"]
        volume = next(volume for volume in pod["volumes"] if volume["name"] == "secret-files")
        assert volume["secret"] == {
            "secretName": "my-service-credentials",
            "items": [{"key": "log-level", "path": "log-level"}, {"key": "otlp-endpoint", "path": "otlp-endpoint"}],
        }
    for document in manifests(chart):
        assert "secret-files" not in yaml.safe_dump(document), "no secret files by default"


def test_a_management_port_takes_the_probes_and_the_scrape_and_stays_off_the_api_s_service(chart: Path) -> None:
    values = {**variants(chart)["managementport"]}
    with_worker = broker_of(chart) != "none"
    if with_worker:
        values["worker"] = {"enabled": True}
    documents = manifests(chart, values)
    settings = yaml.safe_load(of_kind(documents, "ConfigMap")[0]["data"]["settings.yml"])
    assert (settings["server"]["port"], settings["management"]["port"]) == (8000, 9090)
    api = named(documents, "Deployment", FULLNAME)["spec"]["template"]["spec"]["containers"][0]
    assert [(port["name"], port["containerPort"]) for port in api["ports"]] == [("http", 8000), ("management", 9090)]
    assert named(documents, "Service", FULLNAME)["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    management = named(documents, "Service", f"{FULLNAME}-management")
    assert management["spec"]["ports"][0]["targetPort"] == "management"
    monitor = named(documents, "ServiceMonitor", FULLNAME)
    assert monitor["spec"]["endpoints"][0]["port"] == "management"
    assert selects(monitor["spec"]["selector"]["matchLabels"], management["metadata"]["labels"])
    assert not selects(monitor["spec"]["selector"]["matchLabels"], named(documents, "Service", FULLNAME)["metadata"]["labels"])
    rules = named(documents, "NetworkPolicy", FULLNAME)["spec"]["ingress"]
    assert rules[1] == {
        "ports": [{"port": "management", "protocol": "TCP"}],
        "from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}
            for name in ("monitoring", "observability")
        ],
    }
    pods = [api]
    if with_worker:
        worker = named(documents, "Deployment", f"{FULLNAME}-worker")["spec"]["template"]["spec"]["containers"][0]
        assert worker["ports"] == [{"name": "management", "containerPort": 9090, "protocol": "TCP"}], "no API"
        assert named(documents, "NetworkPolicy", f"{FULLNAME}-worker")["spec"]["ingress"] == [rules[1]]
        pods.append(worker)
    for container in pods:
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] == "management", probe
    with pytest.raises(helm.HelmError, match="managementPort must differ from containerPort"):
        helm.Chart.load(chart).render({"managementPort": 8000}, name=RELEASE, namespace="prod")


def test_only_a_project_with_a_broker_has_a_worker(chart: Path) -> None:
    worker_files = [*(chart / "templates").glob("worker-*"), *(chart / "ci").glob("worker-*")]
    values = yaml.safe_load((chart / "values.yaml").read_text(encoding="utf-8"))
    schema = (chart / "values.schema.json").read_text(encoding="utf-8")
    if broker_of(chart) == "none":
        assert (worker_files, "worker" in values, '"worker"' in schema) == ([], False, False)
        return
    assert {path.name for path in worker_files} == {
        "worker-deployment.yaml", "worker-pdb.yaml", "worker-hpa.yaml", "worker-servicemonitor.yaml",
        "worker-networkpolicy.yaml", "worker-values.yaml",
    }  # fmt: skip
    assert values["worker"]["enabled"] is False
    assert "_BROKER_URL" in (chart / "values.yaml").read_text(encoding="utf-8"), "secretEnv's example names the broker"


def test_the_worker_runs_apart_from_the_api(chart: Path) -> None:
    if broker_of(chart) == "none":
        return  # nothing of the worker is there (test_only_a_project_with_a_broker_has_a_worker)
    documents = manifests(chart, variants(chart)["worker"])
    worker_name = f"{FULLNAME}-worker"
    api, worker = named(documents, "Deployment", FULLNAME), named(documents, "Deployment", worker_name)
    api_pod, worker_pod = api["spec"]["template"], worker["spec"]["template"]
    api_container, worker_container = api_pod["spec"]["containers"][0], worker_pod["spec"]["containers"][0]
    assert worker_container["args"] == WORKER_ARGS
    probes = {name: worker_container[f"{name}Probe"]["httpGet"] for name in ("liveness", "readiness", "startup")}
    assert probes == {
        "liveness": {"path": "/health/live", "port": "http"},
        "readiness": {"path": "/health/ready", "port": "http"},
        "startup": {"path": "/health/startup", "port": "http"},
    }
    # The same pod but for the command: image, settings, secrets, security, drain time.
    for key in ("image", "ports", "securityContext", "volumeMounts"):
        assert worker_container[key] == api_container[key], key
    for key in ("securityContext", "volumes", "terminationGracePeriodSeconds", "serviceAccountName"):
        assert worker_pod["spec"][key] == api_pod["spec"][key], key
    assert worker_pod["metadata"]["annotations"] == api_pod["metadata"]["annotations"], "new settings roll both"
    assert worker_pod["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    assert "replicas" not in worker["spec"], "the worker's autoscaler owns its replicas"
    settings = yaml.safe_load(named(documents, "ConfigMap", FULLNAME)["data"]["settings.yml"])
    assert settings["broker"] == {"consume": False}, "with the worker on, the API's pods leave consuming to it"

    # Whatever selects pods selects those of its own Deployment alone.
    pods = {FULLNAME: api_pod["metadata"]["labels"], worker_name: worker_pod["metadata"]["labels"]}
    for owner, pod in ((FULLNAME, api_pod), (worker_name, worker_pod)):
        selectors = {
            "Deployment": named(documents, "Deployment", owner)["spec"]["selector"]["matchLabels"],
            "Service": named(documents, "Service", owner)["spec"]["selector"],
            "PodDisruptionBudget": named(documents, "PodDisruptionBudget", owner)["spec"]["selector"]["matchLabels"],
            "NetworkPolicy": named(documents, "NetworkPolicy", owner)["spec"]["podSelector"]["matchLabels"],
            "spread": pod["spec"]["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"],
        }
        for kind, selector in selectors.items():
            assert [name for name, labels in pods.items() if selects(selector, labels)] == [owner], kind
        monitor = named(documents, "ServiceMonitor", owner)["spec"]
        monitored = [service["metadata"]["name"] for service in of_kind(documents, "Service")
                     if selects(monitor["selector"]["matchLabels"], service["metadata"]["labels"])]  # fmt: skip
        assert monitored == [owner]
        assert monitor["endpoints"][0]["path"] == "/metrics"
    assert named(documents, "Service", worker_name)["spec"]["clusterIP"] == "None", "for scraping, not for requests"
    hpa = named(documents, "HorizontalPodAutoscaler", worker_name)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": worker_name}


def test_the_worker_shares_the_api_s_secrets_and_extra_environment(chart: Path) -> None:
    if broker_of(chart) == "none":
        return
    values = {**variants(chart)["existingsecret"], "secretEnv": {"TOKEN": "x"}, "worker": {"enabled": True}}
    pods = [deployment["spec"]["template"]["spec"] for deployment in of_kind(manifests(chart, values), "Deployment")]
    containers = [pod["containers"][0] for pod in pods]
    assert len(containers) == 2
    for key in ("env", "envFrom"):
        assert containers[0][key] == containers[1][key], key
    secrets = [{"secretRef": {"name": "my-service-secrets"}}, {"secretRef": {"name": FULLNAME}}]
    assert containers[1]["envFrom"] == secrets
    # The replicas are the worker's own without an autoscaler; nothing of it without a budget.
    worker = {"enabled": True, "replicaCount": 3, "podDisruptionBudget": {"enabled": False}}
    documents = manifests(chart, {"worker": worker})
    assert named(documents, "Deployment", f"{FULLNAME}-worker")["spec"]["replicas"] == 3
    assert [pdb["metadata"]["name"] for pdb in of_kind(documents, "PodDisruptionBudget")] == [FULLNAME]
    assert not of_kind(documents, "HorizontalPodAutoscaler")


def test_the_worker_s_names_stay_apart_at_the_longest(chart: Path) -> None:
    if broker_of(chart) == "none":
        return
    longest = "x" * 63
    documents = manifests(chart, {"fullnameOverride": longest, "nameOverride": longest, "worker": {"enabled": True}})
    deployments = of_kind(documents, "Deployment")
    names = {deployment["metadata"]["name"] for deployment in deployments}
    labels = {deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for deployment in deployments}
    for found in (names, labels):
        assert len(found) == 2, found
        assert max(map(len, found)) <= 63, found


def test_bad_worker_values_are_refused(chart: Path) -> None:
    with_worker = broker_of(chart) != "none"
    complaint = "/worker/replicaCount" if with_worker else "'worker' not allowed"
    with pytest.raises(helm.HelmError, match=complaint):
        helm.Chart.load(chart).render({"worker": {"replicaCount": "two"}}, name=RELEASE, namespace="prod")
    if with_worker:
        with pytest.raises(helm.HelmError, match="/worker/autoscaling"):
            helm.Chart.load(chart).render({"worker": {"autoscaling": {"minReplicas": 0}}}, name=RELEASE)


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": "two"}, "replicaCount"),
        ({"replicas": 2}, "replicas"),
        ({"service": {"port": 70000}}, "port"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"settings": {"shutdown": {"delay": "soon"}}}, "delay"),
        ({"secretEnv": {"NOT A NAME": "x"}}, "NOT A NAME"),
        ({"secretFiles": {"secretName": "", "variables": {"X": "key"}}}, "secretName"),
        ({"secretFiles": {"secretName": "s", "variables": {"X": "../key"}}}, "variables/X"),
    ],
)
def test_bad_values_are_refused(chart: Path, values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm.HelmError, match=complaint):
        helm.Chart.load(chart).render(values, name=RELEASE, namespace="prod")


def test_make_chart_lints_and_renders_every_values_file(chart: Path) -> None:
    """``make chart`` (the generated CI's chart job) with Helm's code standing in for the helm binary."""
    project = chart.parents[1]
    helm_command = f"{sys.executable} {Path(__file__).parent / 'tools' / 'helm.py'}"
    result = subprocess.run(["make", "chart", f"HELM={helm_command}"], cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    (chart / "ci" / "broken-values.yaml").write_text('replicaCount: "two"\n', encoding="utf-8")
    try:
        result = subprocess.run(["make", "chart", f"HELM={helm_command}"], cwd=project, capture_output=True, text=True)
    finally:
        (chart / "ci" / "broken-values.yaml").unlink()
    assert result.returncode != 0
    assert "/replicaCount': got string, want integer" in result.stderr
