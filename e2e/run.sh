#!/usr/bin/env bash
# End-to-end on a real cluster (kind, or whatever KUBECONFIG points at):
# install lifeboat from manifests/, run PostgreSQL and an S3 server (MinIO) in
# a scratch namespace, apply a BackupPolicy and a manual BackupRun, wait for
# Succeeded, then list and restore the backup from inside the cluster.
#
#   LIFEBOAT_IMAGE=registry/lifeboat:tag e2e/run.sh     # the image must be pullable
#                                                        # (kind: `kind load docker-image …`)
# Prints SKIPPED and exits 0 when no cluster is reachable.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v kubectl >/dev/null || ! kubectl version --request-timeout=5s >/dev/null 2>&1; then
  echo "e2e: SKIPPED — no Kubernetes cluster reachable (KUBECONFIG=${KUBECONFIG:-~/.kube/config}); nothing was tested"
  exit 0
fi
: "${LIFEBOAT_IMAGE:?set LIFEBOAT_IMAGE to a lifeboat image the cluster can pull (docker build -t … . )}"
NS=lifeboat-e2e
TIMEOUT=${E2E_TIMEOUT:-300s}
log() { printf '\033[1m[e2e]\033[0m %s\n' "$*"; }
cleanup() { [ "${E2E_KEEP:-}" = 1 ] || kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT

log "installing lifeboat (image $LIFEBOAT_IMAGE)"
kubectl apply -f manifests/00-namespace.yaml -f manifests/01-crds.yaml
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
sed "s#ghcr.io/lifeboat-dev/lifeboat:0.1.0#$LIFEBOAT_IMAGE#g" manifests/0[2-5]-*.yaml | kubectl apply -f -
kubectl -n lifeboat-system rollout status deploy/lifeboat-controller --timeout="$TIMEOUT"

log "PostgreSQL and MinIO in namespace $NS"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
PW=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
kubectl -n "$NS" create secret generic db --from-literal=host=db --from-literal=port=5432 \
  --from-literal=user=postgres --from-literal=password="$PW" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NS" create secret generic s3 --from-literal=AWS_ACCESS_KEY_ID=lifeboat \
  --from-literal=AWS_SECRET_ACCESS_KEY="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" --dry-run=client -o yaml | kubectl apply -f -
KEYS=$(mktemp -d)/keys
docker run --rm -v "$(dirname "$KEYS"):/out" --user "$(id -u)" "$LIFEBOAT_IMAGE" keygen --id e2e-1 --out /out/keys 2>/dev/null \
  || cargo run --quiet -- keygen --id e2e-1 --out "$KEYS"
kubectl -n "$NS" create secret generic backup-keys --from-file=keys="$KEYS" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NS" apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: db}
spec:
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
        - name: postgres
          image: postgres:15
          env:
            - {name: POSTGRES_PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}
          ports: [{containerPort: 5432}]
          readinessProbe: {exec: {command: [pg_isready, -U, postgres]}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {selector: {app: db}, ports: [{port: 5432}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: minio}
spec:
  selector: {matchLabels: {app: minio}}
  template:
    metadata: {labels: {app: minio}}
    spec:
      containers:
        - name: minio
          image: minio/minio
          command: [sh, -c, "mkdir -p /data/e2e-us /data/e2e-eu && minio server /data"]
          env:
            - {name: MINIO_ROOT_USER, valueFrom: {secretKeyRef: {name: s3, key: AWS_ACCESS_KEY_ID}}}
            - {name: MINIO_ROOT_PASSWORD, valueFrom: {secretKeyRef: {name: s3, key: AWS_SECRET_ACCESS_KEY}}}
          ports: [{containerPort: 9000}]
          readinessProbe: {httpGet: {path: /minio/health/ready, port: 9000}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: minio}
spec: {selector: {app: minio}, ports: [{port: 9000}]}
YAML
kubectl -n "$NS" rollout status deploy/db --timeout="$TIMEOUT"
kubectl -n "$NS" rollout status deploy/minio --timeout="$TIMEOUT"
kubectl -n "$NS" exec deploy/db -- psql -U postgres -qc \
  "create database orders" -c "\\c orders" -c "create table t as select i, md5(i::text) m from generate_series(1, 10000) i"

log "policy with two destinations, and a manual run"
kubectl -n "$NS" apply -f - <<YAML
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPolicy
metadata: {name: orders}
spec:
  source: {postgres: {connectionSecretRef: {name: db}, databases: [orders], method: logical}}
  schedule: {daily: "0 2 * * *", timeZone: UTC}
  retention: {daily: 7}
  destinations:
    - {name: us, s3: {endpoint: "http://minio.$NS.svc:9000", allowInsecureHttp: true, region: us-east-1, bucket: e2e-us, prefix: e2e, credentialsSecretRef: {name: s3}}}
    - {name: eu, s3: {endpoint: "http://minio.$NS.svc:9000", allowInsecureHttp: true, region: eu-west-1, bucket: e2e-eu, prefix: e2e, credentialsSecretRef: {name: s3}}}
  encryption: {keySecretRef: {name: backup-keys}}
---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupRun
metadata: {name: orders-now}
spec: {policyRef: {name: orders}, tier: manual}
YAML
kubectl -n "$NS" wait backuprun/orders-now --for=jsonpath='{.status.phase}'=Succeeded --timeout="$TIMEOUT" || {
  kubectl -n "$NS" get backuprun orders-now -o yaml; kubectl -n "$NS" get jobs,pods; exit 1; }
ID=$(kubectl -n "$NS" get backuprun orders-now -o jsonpath='{.status.backupId}')
log "backup $ID succeeded; listing and restoring it from inside the cluster"
kubectl -n "$NS" get bp,br

kubectl -n "$NS" apply -f - <<YAML
apiVersion: batch/v1
kind: Job
metadata: {name: check}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: check
          image: $LIFEBOAT_IMAGE
          command: [sh, -c]
          args:
            - >-
              lifeboat list --from "s3://e2e-eu/e2e/$NS/orders?region=eu-west-1&endpoint=http://minio.$NS.svc:9000&insecure-http=true" | grep -q "$ID" &&
              lifeboat restore --from "s3://e2e-eu/e2e/$NS/orders?region=eu-west-1&endpoint=http://minio.$NS.svc:9000&insecure-http=true"
              --backup "$ID" --target-db orders_restored --create &&
              test "\$(psql -Atc 'select count(*) from t' orders_restored)" = 10000
          env:
            - {name: PGHOST, value: db}
            - {name: PGUSER, value: postgres}
            - {name: PGPASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}
            - {name: AWS_ACCESS_KEY_ID, valueFrom: {secretKeyRef: {name: s3, key: AWS_ACCESS_KEY_ID}}}
            - {name: AWS_SECRET_ACCESS_KEY, valueFrom: {secretKeyRef: {name: s3, key: AWS_SECRET_ACCESS_KEY}}}
            - {name: LIFEBOAT_KEY_FILE, value: /keys/keys}
          volumeMounts: [{name: keys, mountPath: /keys, readOnly: true}]
      volumes: [{name: keys, secret: {secretName: backup-keys}}]
YAML
kubectl -n "$NS" wait job/check --for=condition=Complete --timeout="$TIMEOUT" || { kubectl -n "$NS" logs job/check; exit 1; }
log "PASSED: policy → run → Job → backup in both buckets → restored 10000 rows"
