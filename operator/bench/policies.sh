#!/usr/bin/env bash
# Load test for arca-operator on a real cluster (kind, k3d or any test cluster).
#
#   operator/bench/policies.sh up   [N=1000] [NAMESPACE=arca-bench]   # create N policies
#   operator/bench/policies.sh measure                                 # RSS + schedule latency
#   operator/bench/policies.sh down                                    # delete everything
#
# What it measures (targets: peak RSS <= 64 MiB with 1,000 BackupPolicies; a due backup's
# Job created within 2 s of its scheduled time):
#   - the operator pod's memory (working set from metrics-server when present, else the
#     container's cgroup memory.peak / memory.max_usage_in_bytes through `kubectl exec`);
#   - for every policy that ran, Job.metadata.creationTimestamp minus the Job's
#     arca.dev/scheduled-time annotation (both whole seconds, so this is an upper bound
#     rounded to a second).
# The policies back up an emptyDir-backed claim to an S3 endpoint that does not exist: the
# Jobs fail fast, which is fine — only scheduling is measured. Each policy is scheduled a
# few minutes ahead, spread over the minutes so the API server is not hit at one instant.
set -euo pipefail

N="${N:-1000}"
NAMESPACE="${NAMESPACE:-arca-bench}"
OPERATOR_NAMESPACE="${OPERATOR_NAMESPACE:-arca-system}"
OPERATOR_SELECTOR="${OPERATOR_SELECTOR:-app.kubernetes.io/name=arca-operator}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"

up() {
  kubectl apply -f "$ROOT/crds/"
  kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
  kubectl -n "$NAMESPACE" create secret generic s3 --from-literal=id=bench --from-literal=secret=bench \
    --dry-run=client -o yaml | kubectl apply -f -
  cat <<YAML | kubectl -n "$NAMESPACE" apply -f -
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: docs}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 10Mi}}}
YAML
  # First run 3..12 minutes from now (UTC), one policy per minute slot in turn.
  local start_min
  start_min=$(( $(date -u +%s) / 60 + 3 ))
  local file
  file="$(mktemp)"
  for i in $(seq 1 "$N"); do
    local at=$(( (start_min + i % 10) * 60 ))
    local minute hour
    minute=$(date -u -d "@$at" +%M | sed 's/^0//')
    hour=$(date -u -d "@$at" +%H | sed 's/^0//')
    cat >>"$file" <<YAML
---
apiVersion: arca.dev/v1alpha1
kind: BackupPolicy
metadata: {name: bench-$i}
spec:
  schedule: "$minute $hour * * *"
  rpo: 26h
  components:
    - name: docs
      files: {claimName: docs}
  destinations:
    - name: offsite
      s3: {endpoint: "http://127.0.0.1:1", bucket: bench,
           accessKeyIdSecretRef: {name: s3, key: id}, secretAccessKeySecretRef: {name: s3, key: secret}}
YAML
  done
  kubectl -n "$NAMESPACE" apply -f "$file" >/dev/null
  rm -f "$file"
  echo "created $N BackupPolicies in $NAMESPACE; first runs start in 3 minutes, the last within 13"
}

measure() {
  local pod
  pod="$(kubectl -n "$OPERATOR_NAMESPACE" get pods -l "$OPERATOR_SELECTOR" -o jsonpath='{.items[0].metadata.name}')"
  echo "== operator memory ($pod)"
  kubectl -n "$OPERATOR_NAMESPACE" top pod "$pod" --containers 2>/dev/null || true
  kubectl -n "$OPERATOR_NAMESPACE" exec "$pod" -- sh -c \
    'cat /sys/fs/cgroup/memory.peak 2>/dev/null || cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes' \
    2>/dev/null | awk '{printf "peak: %.1f MiB (target <= 64 MiB)\n", $1/1048576}' \
    || echo "peak: image has no shell; read container_memory_max_usage_bytes from cAdvisor instead"
  echo "== schedule latency (Job created - scheduled time)"
  kubectl -n "$NAMESPACE" get jobs -l app.kubernetes.io/managed-by=arca-operator -o json \
    | python3 -c '
import json, sys
from datetime import datetime
def t(s): return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
lat = []
for j in json.load(sys.stdin)["items"]:
    a = j["metadata"].get("annotations", {})
    if "arca.dev/scheduled-time" in a:
        lat.append(t(j["metadata"]["creationTimestamp"]) - t(a["arca.dev/scheduled-time"]))
if not lat:
    sys.exit("no scheduled jobs yet: wait for the first runs")
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"jobs: {len(lat)}  p50: {p(0.5):.0f}s  p99: {p(0.99):.0f}s  max: {lat[-1]:.0f}s  (target: <= 2 s)")
'
}

down() {
  kubectl delete namespace "$NAMESPACE" --wait=false
}

case "${1:-}" in
  up) up ;;
  measure) measure ;;
  down) down ;;
  *) echo "usage: $0 up|measure|down" >&2; exit 2 ;;
esac
