#!/usr/bin/env python3
"""Offline checks of Arca's Kubernetes packaging (run by scripts/validate-manifests.sh).

1. Every object in manifests/ and in the chart rendered with its defaults and with every
   option on validates: built-in kinds against the Kubernetes 1.26 and 1.33 schemas in
   strict mode (kubernetes-validate; unknown fields are errors), BackupPolicy and
   RestoreRequest against the openAPIV3Schema of crds/*.yaml (closed objects, as the API
   server's strict field validation), ServiceMonitor and PrometheusRule against the subset
   of prometheus-operator's schema the chart uses.
2. charts/arca/values.yaml meets values.schema.json, and each file in bad-values/ is refused
   with the message its `# expect:` line names.
3. The CRD copies (charts/arca/crds, manifests/install/10-crd-*) are the bytes of crds/.
4. manifests/install is the chart's default render, object by object and field by field
   (only the Helm-only labels differ); RBAC, security contexts and probes meet the rules
   below in every render.
5. Each check is shown to fail on a broken input (the checker checks itself).

Prints one line per failure and exits 1 when there is any.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import yaml
import jsonschema
import kubernetes_validate

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helmlite  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "arca"
KUBE_VERSIONS = ("1.26.0", "1.33.0")
RELEASE, NAMESPACE = "arca", "arca-system"

# Every option on, to validate what the defaults do not render.
ALL_ON = {
    "replicaCount": 2,
    "watchNamespaces": ["clinic", "radiology"],
    "jobServiceAccount": {"namespaces": ["clinic", "radiology"]},
    "jobImagePullSecrets": ["registry"],
    "imagePullSecrets": ["registry"],
    "job": {"cpuLimit": "2"},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}],
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                             "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "arca-operator"}}}}]}},
    "priorityClassName": "system-cluster-critical",
    "podAnnotations": {"example.org/a": "b"},
    "podLabels": {"team": "it"},
    "metrics": {"port": 9090, "service": {"annotations": {"example.org/scrape": "true"}}},
}

failures: list[str] = []


def fail(msg: str):
    failures.append(msg)


def report(before: int, ok: str):
    """Print the failures found since `before`, or the ok line of the section."""
    for msg in failures[before:]:
        print(f"FAIL {msg}", flush=True)
    if len(failures) == before:
        print(f"ok   {ok}", flush=True)


# ---------------------------------------------------------------------------- schemas

DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
META = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253},
    "namespace": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
    "labels": STRMAP, "annotations": STRMAP}, "additionalProperties": False}

# The part of prometheus-operator's CRDs (monitoring.coreos.com/v1) the chart uses.
MONITORING = {
    "ServiceMonitor": {"type": "object", "additionalProperties": False,
                       "required": ["apiVersion", "kind", "metadata", "spec"], "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"},
        "metadata": META,
        "spec": {"type": "object", "additionalProperties": False, "required": ["endpoints", "selector"], "properties": {
            "selector": {"type": "object", "additionalProperties": False,
                         "properties": {"matchLabels": STRMAP}},
            "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {
                "matchNames": {"type": "array", "items": {"type": "string"}}, "any": {"type": "boolean"}}},
            "endpoints": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False, "properties": {
                    "port": {"type": "string"}, "path": {"type": "string"},
                    "interval": DURATION, "scrapeTimeout": DURATION}}}}}}},
    "PrometheusRule": {"type": "object", "additionalProperties": False,
                       "required": ["apiVersion", "kind", "metadata", "spec"], "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PrometheusRule"},
        "metadata": META,
        "spec": {"type": "object", "additionalProperties": False, "properties": {
            "groups": {"type": "array", "items": {
                "type": "object", "additionalProperties": False, "required": ["name", "rules"], "properties": {
                    "name": {"type": "string", "minLength": 1}, "interval": DURATION,
                    "rules": {"type": "array", "items": {
                        "type": "object", "additionalProperties": False, "required": ["expr"],
                        "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                        "properties": {
                            "alert": {"type": "string"}, "record": {"type": "string"},
                            "expr": {"type": "string", "minLength": 1}, "for": DURATION,
                            "labels": STRMAP, "annotations": STRMAP}}}}}}}}}},
}


def crd_schema(crd: dict) -> dict:
    """The CRD's openAPIV3Schema as a JSON schema with closed objects (strict validation)."""

    def convert(node):
        if isinstance(node, list):
            return [convert(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {k: convert(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
        if node.get("nullable"):
            out.pop("nullable", None)
            if "type" in out:
                out["type"] = [out["type"], "null"]
        if node.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if ("properties" in out and "additionalProperties" not in out
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out

    version = crd["spec"]["versions"][0]
    schema = convert(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = META
    schema["properties"]["apiVersion"] = {"const": f"{crd['spec']['group']}/{version['name']}"}
    schema["properties"]["kind"] = {"const": crd["spec"]["names"]["kind"]}
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    return schema


def load_crds() -> dict:
    crds = {}
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        crds[crd["spec"]["names"]["kind"]] = crd_schema(crd)
    return crds


CRDS = load_crds()


def problems(obj) -> list[str]:
    """Schema problems of one object (empty when valid)."""
    if not isinstance(obj, dict) or "kind" not in obj or "apiVersion" not in obj:
        return ["not a Kubernetes object (no apiVersion/kind)"]
    kind, api = obj["kind"], obj["apiVersion"]
    if api.startswith("arca.dev/") or api.startswith("monitoring.coreos.com/"):
        schema = CRDS.get(kind) if api.startswith("arca.dev/") else MONITORING.get(kind)
        if schema is None:
            return [f"unknown kind {api} {kind}"]
        v = jsonschema.Draft7Validator(schema)
        return [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
                for e in sorted(v.iter_errors(obj), key=lambda e: list(e.absolute_path))]
    out = []
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path) or "(root)"
            out.append(f"Kubernetes {version}: {where}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            out.append(f"Kubernetes {version} has no {api} {kind}")
    return out


def name_of(obj) -> str:
    m = obj.get("metadata") or {}
    ns = m.get("namespace")
    return f"{obj.get('kind')} {ns + '/' if ns else ''}{m.get('name')}"


def load_docs(path: Path) -> list:
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        fail(f"{path.relative_to(REPO)}: not valid YAML: {e}")
        return []


# ---------------------------------------------------------------------------- invariants

def rbac_rules(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def check_invariants(where: str, objs: list, values: dict):
    """What the security review relies on, in one render."""
    deployments = [o for o in objs if o["kind"] == "Deployment"]
    if len(deployments) != 1:
        fail(f"{where}: expected one Deployment, found {len(deployments)}")
        return
    d = deployments[0]
    pod = d["spec"]["template"]["spec"]
    c = pod["containers"][0]
    psc, sc = pod.get("securityContext", {}), c.get("securityContext", {})
    want = [
        (psc.get("runAsNonRoot") is True, "pod runAsNonRoot: true"),
        ((psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", "pod seccompProfile RuntimeDefault"),
        (sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem: true"),
        (sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation: false"),
        ((sc.get("capabilities") or {}).get("drop") == ["ALL"], "capabilities.drop [ALL]"),
        ((sc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", "container seccompProfile RuntimeDefault"),
        ((c.get("livenessProbe") or {}).get("httpGet", {}).get("path") == "/healthz", "livenessProbe on /healthz"),
        ((c.get("readinessProbe") or {}).get("httpGet", {}).get("path") == "/readyz", "readinessProbe on /readyz"),
        (bool((c.get("resources") or {}).get("requests")) and bool((c.get("resources") or {}).get("limits")), "resources"),
    ]
    for ok, what in want:
        if not ok:
            fail(f"{where}: the operator Deployment lacks {what}")
    env = {e["name"]: e for e in c.get("env", [])}
    for n in ("POD_NAME", "POD_NAMESPACE"):
        if "fieldRef" not in (env.get(n, {}).get("valueFrom") or {}):
            fail(f"{where}: {n} must come from the downward API")
    port = values["metrics"]["port"]
    if env.get("ARCA_LISTEN", {}).get("value") != f"0.0.0.0:{port}" or c["ports"][0]["containerPort"] != port:
        fail(f"{where}: the listen address and the container port disagree")
    leases = [o for o in objs if o["kind"] == "Role"
              and any("leases" in r.get("resources", []) for r in o.get("rules") or [])]
    elect = env.get("ARCA_LEADER_ELECTION", {}).get("value") == "true"
    if values["replicaCount"] > 1:
        if not elect or not leases or d["spec"]["strategy"]["type"] != "RollingUpdate":
            fail(f"{where}: {values['replicaCount']} replicas need leader election and its Lease Role")
    elif elect or leases or d["spec"]["strategy"]["type"] != "Recreate":
        fail(f"{where}: one replica runs without leader election, no Lease rights, Recreate")

    operator_rules = []
    for o in objs:
        if o["kind"] not in ("Role", "ClusterRole"):
            continue
        rules = o.get("rules") or []
        for r in rules:
            if "*" in r.get("verbs", []) or "*" in r.get("resources", []) or "*" in r.get("apiGroups", []):
                fail(f"{where}: {name_of(o)} uses a wildcard")
            if "secrets" in r.get("resources", []) and set(r["verbs"]) - {"get"}:
                fail(f"{where}: {name_of(o)} may {sorted(set(r['verbs']) - {'get'})} secrets: the operator needs get (metadata) only")
            if any(res.startswith(("roles", "clusterroles", "rolebindings", "clusterrolebindings", "serviceaccounts/token"))
                   for res in r.get("resources", [])):
                fail(f"{where}: {name_of(o)} grants rights on RBAC or tokens")
        if o["metadata"]["name"] == values.get("jobServiceAccount", {}).get("name") and rules:
            fail(f"{where}: the Job Role {name_of(o)} must be empty")
        if o["metadata"]["name"] == f"{RELEASE}-operator":
            operator_rules.append((name_of(o), rules))
    if not operator_rules:
        fail(f"{where}: no operator Role or ClusterRole")
    for n, rules in operator_rules[1:]:
        if rules != operator_rules[0][1]:
            fail(f"{where}: {n} and {operator_rules[0][0]} grant different rules")
    kinds = {o["kind"] for o in objs}
    if values["watchNamespaces"] and kinds & {"ClusterRole", "ClusterRoleBinding"}:
        fail(f"{where}: watchNamespaces is set but the render has cluster-wide RBAC")
    for o in objs:
        if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == values["jobServiceAccount"]["name"]:
            if o.get("automountServiceAccountToken") is not False:
                fail(f"{where}: {name_of(o)} must not mount its token")


def comments_on_rules():
    """A comment above every RBAC rule in the templates (they become the manifests')."""
    for path in sorted((CHART / "templates").glob("*.yaml")):
        lines = path.read_text().split("\n")
        for i, line in enumerate(lines):
            if line.strip().startswith("- apiGroups:") and not lines[i - 1].strip().startswith("#"):
                fail(f"charts/arca/templates/{path.name}:{i + 1}: an RBAC rule without a comment saying why")


# ---------------------------------------------------------------------------- comparison

def strip_helm(obj):
    obj = copy.deepcopy(obj)
    for meta in (obj.get("metadata"), ((obj.get("spec") or {}).get("template") or {}).get("metadata")):
        if meta and meta.get("labels"):
            for k in helmlite.HELM_ONLY_LABELS:
                if k == "app.kubernetes.io/managed-by" and meta["labels"].get(k) != "Helm":
                    continue
                meta["labels"].pop(k, None)
    return obj


def key(obj):
    return (obj.get("apiVersion"), obj.get("kind"), (obj.get("metadata") or {}).get("namespace"),
            (obj.get("metadata") or {}).get("name"))


def diff(a, b, path=""):
    """First few differing paths between two parsed objects."""
    if type(a) is not type(b):
        return [f"{path or '(root)'}: {json.dumps(a)} != {json.dumps(b)}"]
    if isinstance(a, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'the chart' if k in a else 'manifests/install'}")
            else:
                out += diff(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items in the chart, {len(b)} in manifests/install"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {json.dumps(a)} (chart) != {json.dumps(b)} (manifests/install)"]


def compare(chart_objs, manifest_objs) -> list[str]:
    """Differences between the chart's default render and manifests/install."""
    plain = [o for o in manifest_objs if o["kind"] not in ("Namespace", "CustomResourceDefinition")]
    chart = {key(o): strip_helm(o) for o in chart_objs}
    mani = {key(o): o for o in plain}
    out = []
    for k in sorted(set(chart) | set(mani), key=str):
        if k not in mani:
            out.append(f"{k[1]} {k[3]}: in the chart, missing from manifests/install")
        elif k not in chart:
            out.append(f"{k[1]} {k[3]}: in manifests/install, not in the chart")
        else:
            out += [f"{k[1]} {k[3]} {d}" for d in diff(chart[k], mani[k])]
    ns = [o for o in manifest_objs if o["kind"] == "Namespace"]
    if [o["metadata"]["name"] for o in ns] != [NAMESPACE]:
        out.append(f"manifests/install must create the namespace {NAMESPACE}")
    return out


# ---------------------------------------------------------------------------- main

def main() -> int:
    # 1. Every manifest.
    manifest_files = sorted((REPO / "manifests").rglob("*.yaml")) + sorted((REPO / "e2e" / "cluster").glob("*.yaml"))
    before = len(failures)
    count = 0
    for path in manifest_files:
        for obj in load_docs(path):
            count += 1
            for p in problems(obj):
                fail(f"{path.relative_to(REPO)}: {name_of(obj)}: {p}")
    report(before, f"{count} objects in {len(manifest_files)} files under manifests/ and e2e/cluster/ validate "
           f"(Kubernetes {' and '.join(KUBE_VERSIONS)} strict; CRDs from crds/)")

    # 2. The chart: defaults and every option on; the values schema.
    renders = {}
    for label, overrides in (("defaults", []), ("every option on", [ALL_ON])):
        before = len(failures)
        try:
            values = helmlite.load_values(CHART, overrides)
            objs = helmlite.objects(helmlite.render_chart(CHART, RELEASE, NAMESPACE, overrides))
        except (helmlite.TemplateError, helmlite.ValuesError) as e:
            fail(f"charts/arca ({label}): {e}")
            report(before, "")
            continue
        renders[label] = objs
        for obj in objs:
            for p in problems(obj):
                fail(f"charts/arca ({label}): {name_of(obj)}: {p}")
        check_invariants(f"charts/arca ({label})", objs, values)
        report(before, f"charts/arca renders {len(objs)} objects ({label}) that validate and keep the rules")
    before = len(failures)
    comments_on_rules()

    bad = sorted((Path(__file__).parent / "bad-values").glob("*.yaml"))
    for path in bad:
        expect = path.read_text().split("\n", 1)[0].removeprefix("# expect:").strip()
        try:
            helmlite.load_values(CHART, [yaml.safe_load(path.read_text())])
            fail(f"{path.relative_to(REPO)}: values.schema.json accepts it")
        except helmlite.ValuesError as e:
            if expect not in str(e):
                fail(f"{path.relative_to(REPO)}: refused, but not with {expect!r}: {e}")
    report(before, f"every RBAC rule has a comment; values.yaml meets values.schema.json; "
           f"{len(bad)} wrong values files are refused with their message")
    before = len(failures)

    # 3. CRD copies.
    for src in sorted((REPO / "crds").glob("*.yaml")):
        for copy_ in (CHART / "crds" / src.name, REPO / "manifests" / "install" / f"10-crd-{src.name}"):
            if not copy_.exists() or copy_.read_bytes() != src.read_bytes():
                fail(f"{copy_.relative_to(REPO)} is not crds/{src.name}: cp crds/{src.name} {copy_.relative_to(REPO)}")
    for extra in (CHART / "crds").glob("*"):
        if not (REPO / "crds" / extra.name).exists():
            fail(f"{extra.relative_to(REPO)} is not in crds/")
    report(before, "the CRD copies in charts/arca/crds and manifests/install are the bytes of crds/")
    before = len(failures)

    # 4. manifests/install == the chart's defaults.
    install = [o for p in sorted((REPO / "manifests" / "install").glob("*.yaml")) for o in load_docs(p)]
    if "defaults" in renders:
        for d in compare(renders["defaults"], install):
            fail(f"manifests/install and charts/arca disagree: {d} "
                 "(regenerate: python3 scripts/packaging/helmlite.py render charts/arca --plain > manifests/install/20-operator.yaml)")
    report(before, "manifests/install is the chart's default render (RBAC, images, security contexts, probes, env)")

    # 5. The checks fail on broken input.
    before = len(failures)
    self_test(renders.get("defaults", []), install)
    report(before, "every check refuses a broken input (self-test)")
    if failures:
        print(f"validate-manifests: {len(failures)} problem(s), first: {failures[0]}", file=sys.stderr)
        return 1
    return 0


def self_test(chart_objs, install):
    def expect_failure(what, found):
        if not found:
            fail(f"self-test: {what} was not detected")

    # A rule drifts between the chart and manifests/install.
    drifted = copy.deepcopy(install)
    for o in drifted:
        if o["kind"] == "ClusterRole":
            o["rules"][0]["verbs"].append("delete")
    expect_failure("an extra verb in manifests/install", compare(chart_objs, drifted))
    drifted = copy.deepcopy(install)
    for o in drifted:
        if o["kind"] == "Deployment":
            o["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    expect_failure("a changed securityContext in manifests/install", compare(chart_objs, drifted))
    # An example drifts from the CRD schema.
    policy = next(o for p in sorted((REPO / "manifests" / "examples").glob("*.yaml"))
                  for o in load_docs(p) if o.get("kind") == "BackupPolicy")
    typo = copy.deepcopy(policy)
    typo["spec"]["shedule"] = typo["spec"].pop("schedule", "0 1 * * *")
    expect_failure("a misspelt BackupPolicy field", problems(typo))
    wrong = copy.deepcopy(policy)
    wrong["spec"]["components"][0]["name"] = 7
    expect_failure("a BackupPolicy field of the wrong type", problems(wrong))
    # A built-in object with an unknown field (strict).
    dep = copy.deepcopy(next(o for o in install if o["kind"] == "Deployment"))
    dep["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    expect_failure("a misspelt Deployment field", problems(dep))
    # An insecure render.
    insecure = copy.deepcopy(chart_objs)
    for o in insecure:
        if o["kind"] == "ClusterRole":
            o["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]})
    before = len(failures)
    values = helmlite.load_values(CHART)
    check_invariants("self-test", insecure, values)
    found = len(failures) > before
    del failures[before:]
    expect_failure("a rule that lists Secrets", found)


def compare_helm(rendered: Path, values: Path | None) -> int:
    """Compare `helm template arca charts/arca -n arca-system [-f VALUES]` with helmlite."""
    overrides = [yaml.safe_load(values.read_text())] if values else []
    mine = {key(o): o for o in helmlite.objects(helmlite.render_chart(CHART, RELEASE, NAMESPACE, overrides))}
    theirs = {key(o): o for o in yaml.safe_load_all(rendered.read_text()) if o}
    out = []
    for k in sorted(set(mine) | set(theirs), key=str):
        if k not in theirs or k not in mine:
            out.append(f"{k[1]} {k[3]}: only in {'helmlite' if k in mine else 'helm'}")
        else:
            out += [f"{k[1]} {k[3]} {d}" for d in diff(theirs[k], mine[k])]
    for d in out:
        print(f"FAIL helm template and scripts/packaging/helmlite.py disagree: {d}")
    if out:
        return 1
    print(f"ok   helm template and helmlite render the same {len(mine)} objects"
          f"{' with ' + str(values) if values else ''}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--compare-helm":
        if len(sys.argv) not in (3, 4):
            sys.exit("usage: validate.py --compare-helm RENDERED.yaml [VALUES.yaml]")
        sys.exit(compare_helm(Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) == 4 else None))
    sys.exit(main())
