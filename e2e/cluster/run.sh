#!/usr/bin/env bash
# Cluster end-to-end test of the chart and the operator, for a machine with kind or k3d,
# helm, kubectl and docker (see README.md):
#
#   e2e/cluster/run.sh            # new kind (or k3d) cluster, deleted afterwards
#   ARCA_E2E_KEEP=1 e2e/cluster/run.sh             # keep the cluster for a look
#   ARCA_E2E_CONTEXT=my-ctx e2e/cluster/run.sh     # use an existing cluster instead
#
# It builds arca:dev and arca-operator:dev (images/build.sh), loads them into the cluster,
# checks the chart with helm lint, compares `helm template` with the offline renderer,
# installs the chart, starts PostgreSQL 15 and Orthanc, writes data, runs a BackupPolicy
# now (backup-now), then restores the database under a new name and Orthanc's storage into
# a new claim with RestoreRequests, and compares both with the originals. Every wait is a
# `kubectl wait` on a condition; nothing sleeps. Without the tools it prints why and exits 0.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=e2e/cluster
NS=arca-e2e
CLUSTER=${ARCA_E2E_CLUSTER_NAME:-arca-e2e}
TIMEOUT=${ARCA_E2E_TIMEOUT:-600s}

log() { printf '==> %s\n' "$*" >&2; }
fail() { printf 'e2e/cluster: %s\n' "$*" >&2; exit 1; }
skip() { printf 'e2e/cluster: skipped: %s\n' "$*" >&2; exit 0; }

# --- tools ---------------------------------------------------------------------------------
provider=
if [[ -n ${ARCA_E2E_CONTEXT:-} ]]; then provider=existing
elif command -v kind >/dev/null; then provider=kind
elif command -v k3d >/dev/null; then provider=k3d
else skip "neither kind nor k3d is installed (or set ARCA_E2E_CONTEXT to an existing cluster)"; fi
for tool in helm kubectl docker python3; do
  command -v $tool >/dev/null || skip "$tool is not installed"
done
docker info >/dev/null 2>&1 || skip "the docker engine does not answer"

# --- cluster -------------------------------------------------------------------------------
RUN_DIR=$(mktemp -d)
VALUES=$RUN_DIR/values.yaml
cleanup() {
  local rc=$?
  rm -rf "$RUN_DIR"
  if [[ $rc != 0 ]]; then
    log "failed; state for the post-mortem:"
    kubectl -n "$NS" get bpol,rreq,jobs,pods -o wide >&2 || true
    kubectl -n "$NS" describe bpol,rreq >&2 || true
    kubectl -n arca-system logs deploy/arca-operator --tail=100 >&2 || true
    for p in $(kubectl -n "$NS" get pods -l app.kubernetes.io/managed-by=arca-operator -o name 2>/dev/null); do
      kubectl -n "$NS" logs "$p" --tail=50 >&2 || true
    done
  fi
  if [[ -z ${ARCA_E2E_KEEP:-} && $provider != existing ]]; then
    case $provider in
      kind) kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true ;;
      k3d) k3d cluster delete "$CLUSTER" >/dev/null 2>&1 || true ;;
    esac
  fi
  exit $rc
}
trap cleanup EXIT

case $provider in
  kind)
    kind get clusters 2>/dev/null | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
    kubectl config use-context "kind-$CLUSTER" >/dev/null ;;
  k3d)
    k3d cluster list "$CLUSTER" >/dev/null 2>&1 || k3d cluster create "$CLUSTER" --wait
    kubectl config use-context "k3d-$CLUSTER" >/dev/null ;;
  existing)
    kubectl config use-context "$ARCA_E2E_CONTEXT" >/dev/null ;;
esac
kubectl wait --for=condition=Ready nodes --all --timeout="$TIMEOUT" >/dev/null

# --- images --------------------------------------------------------------------------------
log "building arca:dev and arca-operator:dev"
images/build.sh all
case $provider in
  kind) kind load docker-image arca:dev arca-operator:dev --name "$CLUSTER" ;;
  k3d) k3d image import arca:dev arca-operator:dev --cluster "$CLUSTER" ;;
  existing) log "existing cluster: arca:dev and arca-operator:dev must be pullable by its nodes" ;;
esac

# --- the chart -----------------------------------------------------------------------------
cat >"$VALUES" <<YAML
image: {repository: arca-operator, tag: dev, pullPolicy: Never}
jobImage: {repository: arca, tag: dev, pullPolicy: Never}
watchNamespaces: [$NS]
jobServiceAccount: {name: arca-job, namespaces: [$NS]}
logFormat: text
YAML
log "helm lint; helm template against the offline renderer"
helm lint --strict charts/arca -f "$VALUES"
for v in "" "$VALUES"; do
  helm template arca charts/arca --namespace arca-system ${v:+-f "$v"} >"$RUN_DIR/helm.yaml"
  scripts/validate-manifests.sh --compare-helm "$RUN_DIR/helm.yaml" ${v:+"$v"}
done
if helm template arca charts/arca --set replicaCount=two >/dev/null 2>"$RUN_DIR/err"; then
  fail "helm accepted replicaCount=two: values.schema.json is not enforced"
fi
grep -q replicaCount "$RUN_DIR/err" || fail "helm refused replicaCount=two without naming it: $(cat "$RUN_DIR/err")"

log "installing the chart"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl create namespace arca-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace arca-system pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null
helm upgrade --install arca charts/arca --namespace arca-system -f "$VALUES" --wait --timeout "$TIMEOUT"
kubectl -n arca-system wait deploy/arca-operator --for=condition=Available --timeout="$TIMEOUT"
# Least privilege, as the API server sees it.
sa=system:serviceaccount:arca-system:arca-operator
can() { kubectl auth can-i "$@" --quiet; }
! can list secrets -n "$NS" --as "$sa" || fail "the operator can list Secrets"
! can create jobs -n default --as "$sa" || fail "the operator has rights outside watchNamespaces"
can create jobs -n "$NS" --as "$sa" || fail "the operator cannot create Jobs in $NS"
! can get pods -n "$NS" --as "system:serviceaccount:$NS:arca-job" || fail "the Job service account has API rights"

# --- the clinic ----------------------------------------------------------------------------
log "starting PostgreSQL and Orthanc"
pg_password=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
kubectl -n "$NS" create secret generic postgres --from-literal=password="$pg_password" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
docker run --rm arca:dev keygen >"$RUN_DIR/age-identity" 2>/dev/null || fail "arca keygen failed"
recipient=$(sed -n 's/^# public key: //p' "$RUN_DIR/age-identity")
[[ $recipient == age1* ]] || fail "arca keygen printed no recipient"
kubectl -n "$NS" create secret generic arca-age --from-file=identity="$RUN_DIR/age-identity" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f "$HERE/workload.yaml" >/dev/null
kubectl -n "$NS" wait pod -l app=postgres --for=condition=Ready --timeout="$TIMEOUT"
kubectl -n "$NS" wait pod -l app=orthanc --for=condition=Ready --timeout="$TIMEOUT"

psql() { kubectl -n "$NS" exec -i statefulset/postgres -- psql -v ON_ERROR_STOP=1 -qtA -U postgres "$@"; }
psql -d clinic <<'SQL'
CREATE TABLE IF NOT EXISTS patient (id serial PRIMARY KEY, name text NOT NULL, born date, note bytea);
INSERT INTO patient (name, born, note)
  SELECT 'patient ' || i, DATE '1950-01-01' + i, sha256(i::text::bytea) FROM generate_series(1, 5000) i;
SQL
# Three DICOM instances, made by Orthanc itself (POST /tools/create-dicom from inside its pod).
for i in 1 2 3; do
  body="{\"Tags\": {\"PatientName\": \"E2E^$i\", \"PatientID\": \"e2e-$i\", \"Modality\": \"OT\"}}"
  kubectl -n "$NS" exec deploy/orthanc -- sh -c '
    url=http://127.0.0.1:8042/tools/create-dicom
    if command -v python3 >/dev/null; then
      python3 -c "import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], sys.argv[2].encode()))" "$url" "$1"
    elif command -v curl >/dev/null; then curl -sf -d "$1" "$url"
    else wget -q -O- --post-data="$1" "$url"; fi' sh "$body" >/dev/null ||
    fail "cannot create a DICOM instance in Orthanc"
done

# --- backup now ----------------------------------------------------------------------------
log "BackupPolicy e2e, backup-now"
sed "s/age1-REPLACE-WITH-YOUR-RECIPIENT/$recipient/" "$HERE/policy.yaml" | kubectl apply -f - >/dev/null
kubectl -n "$NS" wait bpol/e2e --for=condition=Ready --timeout="$TIMEOUT"
kubectl -n "$NS" annotate bpol/e2e arca.dev/backup-now="e2e-$(date +%s)" --overwrite >/dev/null
kubectl -n "$NS" wait bpol/e2e --for=condition=BackupSucceeded --timeout="$TIMEOUT"
snapshot=$(kubectl -n "$NS" get bpol/e2e -o jsonpath='{.status.lastSuccessfulSnapshot}')
[[ -n $snapshot ]] || fail "BackupSucceeded without status.lastSuccessfulSnapshot"
kubectl -n "$NS" wait bpol/e2e --for=condition=WithinRPO --timeout="$TIMEOUT"
log "snapshot $snapshot; Orthanc must be back"
kubectl -n "$NS" wait deploy/orthanc --for=jsonpath='{.status.readyReplicas}'=1 --timeout="$TIMEOUT"
[[ -z $(kubectl -n "$NS" get deploy/orthanc -o jsonpath='{.metadata.annotations.arca\.dev/original-replicas}') ]] ||
  fail "Orthanc still carries arca.dev/original-replicas after the backup"

# --- restore and compare -------------------------------------------------------------------
log "RestoreRequests: the database under a new name, the storage into a new claim"
kubectl apply -f "$HERE/restore.yaml" >/dev/null
kubectl -n "$NS" wait rreq/e2e-db --for=condition=Succeeded --timeout="$TIMEOUT"
kubectl -n "$NS" wait rreq/e2e-storage --for=condition=Succeeded --timeout="$TIMEOUT"
[[ $(kubectl -n "$NS" get rreq/e2e-db -o jsonpath='{.status.snapshot}') == "$snapshot" ]] ||
  fail "the restore did not use snapshot $snapshot"

digest='SELECT count(*) || md5(string_agg(id || name || born || encode(note, $$hex$$), $$,$$ ORDER BY id)) FROM patient'
original=$(psql -d clinic -c "$digest")
restored=$(psql -d clinic_restored -c "$digest")
[[ -n $original && $original == "$restored" ]] || fail "database differs: clinic $original, clinic_restored $restored"
log "database identical ($original)"

kubectl -n "$NS" delete job compare-files --ignore-not-found >/dev/null
kubectl apply -f "$HERE/compare-files.yaml" >/dev/null
if ! kubectl -n "$NS" wait job/compare-files --for=condition=Complete --timeout="$TIMEOUT"; then
  kubectl -n "$NS" logs job/compare-files >&2 || true
  fail "Orthanc's storage and the restored claim differ"
fi
kubectl -n "$NS" logs job/compare-files | grep -qx identical || fail "compare-files did not say identical"
log "Orthanc storage identical ($(kubectl -n "$NS" logs job/compare-files | head -n1))"

# A finished RestoreRequest never runs again (GitOps re-sync).
kubectl apply -f "$HERE/restore.yaml" >/dev/null
[[ $(kubectl -n "$NS" get jobs -l arca.dev/restore=e2e-db -o name | wc -l) == 1 ]] ||
  fail "re-applying a finished RestoreRequest started another Job"
log "cluster e2e passed"
