#!/usr/bin/env bash
# The ambientd Kind lab: a Kind cluster running the stock istio-cni and ztunnel charts against ambientd
# installed as `istiod` in `istio-system`, the white paper's Bookinfo migration (seeds/) deployed in
# ambient mode, and its checks replayed with curl from the sleep pods.
#
#   lab.sh up       Kind cluster, Gateway API CRDs, Istio base (CRDs only), istio-cni (ambient), ztunnel
#   lab.sh load     build the ambientd image (deploy/Dockerfile), kind-load it, apply deploy/kubernetes/
#   lab.sh demo     deploy the Bookinfo scenario (deploy/kind/demo/) in ambient mode
#   lab.sh verify   replay the white paper's checks; print a pass/fail table (exit 1 on any failure)
#   lab.sh down     delete the Kind cluster
#
# Versions: deploy/kind/versions.env (the only place they are written).
# Environment: KIND_CLUSTER_NAME (default ambientd-lab), LAB_TIMEOUT (default 300s, per wait),
# VERIFY_ATTEMPTS (default 5, tries per request check, 2 s apart).
set -euo pipefail

LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$LAB_DIR/../.." && pwd)"
# shellcheck source=versions.env
source "$LAB_DIR/versions.env"

CLUSTER="${KIND_CLUSTER_NAME:-ambientd-lab}"
CONTEXT="kind-$CLUSTER"
TIMEOUT="${LAB_TIMEOUT:-300s}"
ATTEMPTS="${VERIFY_ATTEMPTS:-5}"
SYSTEM_NS="istio-system"
# What the stock ztunnel dials for xDS and certificates: our Service (deploy/kubernetes/30-service.yaml).
ISTIOD_ADDRESS="istiod.istio-system.svc:15012"
# The image deploy/kubernetes/40-deployment.yaml runs (tests/tests/deploy_manifests.rs checks they agree).
IMAGE="ambientd:dev"
MANIFESTS="$REPO_ROOT/deploy/kubernetes"
DEMO="$LAB_DIR/demo"
GATEWAY_API_CRDS="https://github.com/kubernetes-sigs/gateway-api/releases/download/${GATEWAY_API_VERSION}/standard-install.yaml"

say() { printf 'lab.sh: %s\n' "$*"; }
die() {
  printf 'lab.sh: error: %s\n' "$*" >&2
  exit 1
}

# kubectl, always against the lab's cluster (never the current context).
k() { kubectl --context "$CONTEXT" "$@"; }

missing_hint() {
  case "$1" in
    docker) echo "docker is not on PATH. Install Docker (https://docs.docker.com/get-docker/): kind runs the cluster in Docker containers and lab.sh builds the ambientd image with it." ;;
    kind) echo "kind is not on PATH. Install kind $KIND_MIN_VERSION or later (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)." ;;
    kubectl) echo "kubectl is not on PATH. Install it (https://kubernetes.io/docs/tasks/tools/)." ;;
    helm) echo "helm is not on PATH. Install Helm 3 (https://helm.sh/docs/intro/install/): lab.sh installs the Istio charts with it." ;;
    *) echo "$1 is not on PATH." ;;
  esac
}

# need TOOL...: every tool must be on PATH; docker must also answer.
need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "$(missing_hint "$tool")"
  done
  for tool in "$@"; do
    if [[ "$tool" == docker ]] && ! docker info >/dev/null 2>&1; then
      die "docker is installed but its daemon does not answer: start Docker, and check that 'docker info' works for $(id -un)."
    fi
  done
}

check_kind_version() {
  local have
  have="$(kind version 2>/dev/null | sed -n 's/^kind v\([0-9][0-9.]*\).*/\1/p')"
  if [[ -z "$have" ]]; then
    say "warning: could not read the kind version; the node image needs kind $KIND_MIN_VERSION or later"
  elif [[ "$(printf '%s\n%s\n' "$KIND_MIN_VERSION" "$have" | sort -V | head -n1)" != "$KIND_MIN_VERSION" ]]; then
    die "kind $have is older than $KIND_MIN_VERSION, which built $KIND_NODE_IMAGE: upgrade kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)."
  fi
}

cluster_exists() { kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; }

require_cluster() {
  cluster_exists || die "there is no Kind cluster named $CLUSTER: run '$0 up' first."
}

# helm_install RELEASE CHART [ARGS...]: an Istio chart at the pinned version, without adding a Helm repo.
helm_install() {
  local release="$1" chart="$2"
  shift 2
  say "helm: $release ($chart $ISTIO_VERSION)"
  helm upgrade --install "$release" "$chart" \
    --repo "$ISTIO_HELM_REPO" --version "$ISTIO_VERSION" \
    --namespace "$SYSTEM_NS" --create-namespace \
    --kube-context "$CONTEXT" "$@"
}

cmd_up() {
  need docker kind kubectl helm
  check_kind_version
  if cluster_exists; then
    say "Kind cluster $CLUSTER exists; reusing it"
  else
    say "creating Kind cluster $CLUSTER ($KIND_NODE_IMAGE)"
    kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" --wait 120s
  fi

  say "Gateway API $GATEWAY_API_VERSION CRDs (standard channel)"
  k apply --server-side -f "$GATEWAY_API_CRDS"
  k wait --for=condition=Established --timeout=60s \
    crd/gatewayclasses.gateway.networking.k8s.io crd/gateways.gateway.networking.k8s.io \
    crd/httproutes.gateway.networking.k8s.io

  # CRDs only: no default-revision validation webhook (ambientd serves none) and no reader account.
  helm_install istio-base base --set defaultRevision="" --set global.enableReaderRBAC=false --wait
  if k get validatingwebhookconfiguration istiod-default-validator >/dev/null 2>&1; then
    say "removing the validating webhook istiod-default-validator: ambientd does not serve /validate"
    k delete validatingwebhookconfiguration istiod-default-validator
  fi
  k wait --for=condition=Established --timeout=60s \
    crd/authorizationpolicies.security.istio.io crd/peerauthentications.security.istio.io

  helm_install istio-cni cni --set profile=ambient --wait --timeout "$TIMEOUT"
  # Not --wait: ztunnel is ready only once it has synced from istiod, which `load` installs.
  helm_install ztunnel ztunnel --set xdsAddress="$ISTIOD_ADDRESS" --set caAddress="$ISTIOD_ADDRESS"

  say "cluster $CLUSTER is up (kubectl context $CONTEXT)."
  say "ztunnel waits for istiod at $ISTIOD_ADDRESS (and for its istio-ca-root-cert ConfigMap): next, '$0 load'."
}

cmd_load() {
  need docker kind kubectl
  require_cluster
  say "building $IMAGE from deploy/Dockerfile (Rust $RUST_VERSION, runtime $RUNTIME_IMAGE)"
  DOCKER_BUILDKIT=1 docker build \
    --file "$REPO_ROOT/deploy/Dockerfile" \
    --build-arg RUST_VERSION="$RUST_VERSION" \
    --build-arg RUNTIME_IMAGE="$RUNTIME_IMAGE" \
    --tag "$IMAGE" \
    "$REPO_ROOT"
  say "loading $IMAGE into Kind cluster $CLUSTER"
  kind load docker-image "$IMAGE" --name "$CLUSTER"

  local existed=false
  if k -n "$SYSTEM_NS" get deployment istiod >/dev/null 2>&1; then
    existed=true
  fi
  say "applying deploy/kubernetes/ (ambientd as Deployment and Service istiod in $SYSTEM_NS)"
  k apply -f "$MANIFESTS"
  if [[ "$existed" == true ]]; then
    # Same tag, new image: restart so that the pods run what was just loaded.
    k -n "$SYSTEM_NS" rollout restart deployment/istiod
  fi
  if ! k -n "$SYSTEM_NS" rollout status deployment/istiod --timeout "$TIMEOUT"; then
    die "istiod (ambientd) is not ready; see: kubectl --context $CONTEXT -n $SYSTEM_NS logs deployment/istiod"
  fi
  say "waiting for ztunnel to sync from ambientd"
  if ! k -n "$SYSTEM_NS" rollout status daemonset/ztunnel --timeout "$TIMEOUT"; then
    die "ztunnel is not ready; see: kubectl --context $CONTEXT -n $SYSTEM_NS logs daemonset/ztunnel (and logs deployment/istiod)"
  fi
  say "ambientd serves ztunnel. Next: '$0 demo'."
}

cmd_demo() {
  need kubectl
  k -n "$SYSTEM_NS" get deployment istiod >/dev/null 2>&1 ||
    die "ambientd is not installed in cluster $CLUSTER: run '$0 up' and '$0 load' first."
  say "applying deploy/kind/demo/ (namespaces first: pods start enrolled in ambient mode)"
  k apply -f "$DEMO/00-namespaces.yaml"
  k apply -f "$DEMO"
  say "waiting for Bookinfo and the clients (images are pulled on first run)"
  k -n frontend rollout status deployment/productpage-v1 --timeout "$TIMEOUT"
  local d
  for d in details-v1 ratings-v1 reviews-v1 reviews-v2 reviews-v3; do
    k -n backend rollout status "deployment/$d" --timeout "$TIMEOUT"
  done
  k -n frontend wait --for=condition=Ready pod/sleep --timeout "$TIMEOUT"
  k -n backend wait --for=condition=Ready pod/sleep --timeout "$TIMEOUT"
  k -n istio-ingress wait --for=condition=Ready pod/ingress-client --timeout "$TIMEOUT"
  say "Bookinfo is deployed in ambient mode. Next: '$0 verify'."
}

# --- verify ---------------------------------------------------------------------------------------------

PASSED=0
FAILED=0
SKIPPED=0
ROWS=()

# row RESULT STEP REQUEST WANT GOT
row() {
  ROWS+=("$(printf '%-6s %-26s %-70s %-8s %s' "$1" "$2" "$3" "$4" "$5")")
  case "$1" in
    PASS) PASSED=$((PASSED + 1)) ;;
    FAIL) FAILED=$((FAILED + 1)) ;;
    SKIP) SKIPPED=$((SKIPPED + 1)) ;;
  esac
}

# check STEP REQUEST WANT GOT: PASS when GOT equals WANT.
check() {
  if [[ "$4" == "$3" ]]; then
    row PASS "$1" "$2" "$3" "$4"
  else
    row FAIL "$1" "$2" "$3" "$4"
  fi
}

skip() { row SKIP "$1" "$2" "$3" "($4)"; }

# probe NS POD URL [CURL ARGS...]: one request from a client pod. Prints the HTTP status, `denied` when
# the connection was closed or reset before any response (ztunnel refused it: curl exit 52 or 56, the
# white paper's "000 command terminated with exit code 56"), or `error:curl-N`.
probe() {
  local ns="$1" pod="$2" url="$3" code rc=0
  shift 3
  code="$(k -n "$ns" exec "$pod" -- curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "$@" "$url" 2>/dev/null)" || rc=$?
  case "$rc" in
    0) printf '%s' "$code" ;;
    52 | 56) printf 'denied' ;;
    *) printf 'error:curl-%s' "$rc" ;;
  esac
}

# request STEP NS POD URL WANT [CURL ARGS...]: retries (policies may still be propagating) until the
# outcome is WANT or VERIFY_ATTEMPTS tries are spent, then records the last outcome.
request() {
  local step="$1" ns="$2" pod="$3" url="$4" want="$5" got="" i
  shift 5
  for ((i = 1; i <= ATTEMPTS; i++)); do
    got="$(probe "$ns" "$pod" "$url" "$@")"
    if [[ "$got" == "$want" ]]; then
      break
    fi
    if ((i < ATTEMPTS)); then
      sleep 2
    fi
  done
  check "$step" "$ns/$pod -> $url" "$want" "$got"
}

# ambientd zc, run inside the ambientd container against its own admin port.
zc() { k -n "$SYSTEM_NS" exec deployment/istiod -c discovery -- /usr/local/bin/ambientd zc "$@" 2>/dev/null; }

# captured NS: "enrolled/total" pods of NS carrying istio-cni's ambient.istio.io/redirection=enabled.
captured() {
  k -n "$1" get pods --field-selector=status.phase=Running -o jsonpath='{range .items[*]}{.metadata.annotations.ambient\.istio\.io/redirection}{"\n"}{end}' |
    awk '{ n++ } $1 == "enabled" { e++ } END { printf "%d/%d", e, n }'
}

policy_exists() { k -n "$1" get authorizationpolicy "$2" >/dev/null 2>&1; }

cmd_verify() {
  need kubectl
  k get namespace frontend >/dev/null 2>&1 || die "the demo is not deployed in cluster $CLUSTER: run '$0 demo' first."

  # Control plane and data plane: the white paper's `helm ls` and `istioctl zc workload|service`.
  local ready desired zt n got
  ready="$(k -n "$SYSTEM_NS" get deployment istiod -o jsonpath='{.status.readyReplicas}' 2>/dev/null || true)"
  check "ambientd ready" "GET istio-system/istiod:15014/ready" "ready" "$([[ "${ready:-0}" -ge 1 ]] && echo ready || echo not-ready)"
  desired="$(k -n "$SYSTEM_NS" get daemonset ztunnel -o jsonpath='{.status.desiredNumberScheduled}' 2>/dev/null || true)"
  zt="$(k -n "$SYSTEM_NS" get daemonset ztunnel -o jsonpath='{.status.numberReady}' 2>/dev/null || true)"
  check "ztunnel synced" "daemonset/ztunnel ready (ACKed both xDS types)" "${desired:-?}/${desired:-?}" "${zt:-0}/${desired:-?}"
  n="$(zc connections | awk '$2 == "ztunnel" && $5 == "2/2" { c++ } END { print c + 0 }' || true)"
  check "ztunnels connected" "ambientd zc connections: ztunnels with 2/2 ACKed" "${desired:-?}" "${n:-0}"
  for ns in frontend backend istio-ingress; do
    n="$(k -n "$ns" get pods --field-selector=status.phase=Running --no-headers 2>/dev/null | wc -l | tr -d ' ' || true)"
    check "captured by istio-cni" "pods of $ns annotated ambient.istio.io/redirection" "$n/$n" "$(captured "$ns")"
    got="$(zc workloads -n "$ns" | awk 'NR > 1 && $NF == "HBONE" { c++ } END { print c + 0 }' || true)"
    check "HBONE workloads" "ambientd zc workloads -n $ns: PROTOCOL HBONE" "$n" "${got:-0}"
  done
  skip "zc service: WAYPOINT" "backend Services bound to backend/waypoint" "waypoint" "needs a waypoint"

  # The white paper's requests. ztunnel denies by closing the connection (`denied`); a waypoint would
  # answer 403.
  local productpage="productpage.frontend:9080/productpage"
  local host=(-H "Host: bookinfo.example.com")
  request "productpage-viewer" frontend sleep "$productpage" denied "${host[@]}"
  request "productpage-viewer" istio-ingress ingress-client "$productpage" 200 "${host[@]}"

  local details="details.backend:9080/details/1" ratings="ratings.backend:9080/ratings/1"
  # The sidecar-era policies name HTTP methods: ztunnel drops those rules and denies everything.
  if policy_exists backend details-policy; then
    request "details-policy (ztunnel)" backend sleep "$details" denied
  else
    skip "details-policy (ztunnel)" "backend/sleep -> $details" denied "deleted: the paper's last step"
  fi
  if policy_exists backend ratings-policy; then
    request "ratings-policy (ztunnel)" backend sleep "$ratings" denied
  else
    skip "ratings-policy (ztunnel)" "backend/sleep -> $ratings" denied "deleted: the paper's last step"
  fi
  skip "details-policy-waypoint" "frontend/sleep -> $details" 403 "needs a waypoint"
  skip "ratings-policy-waypoint" "backend/sleep -> $ratings" 403 "needs a waypoint"
  skip "reviews route" "productpage shows only reviews-v3" "v3 only" "needs a waypoint"

  # HBONE between ambient pods with no policy in the way, within and across namespaces.
  request "mesh traffic (no policy)" backend sleep "reviews.backend:9080/reviews/1" 200
  request "mesh traffic (no policy)" frontend sleep "reviews.backend:9080/reviews/1" 200

  echo
  say "verify: the white paper's checks against Kind cluster $CLUSTER"
  echo
  printf '%-6s %-26s %-70s %-8s %s\n' RESULT "POLICY / STEP" REQUEST WANT GOT
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "$PASSED passed, $FAILED failed, $SKIPPED skipped."
  if ((SKIPPED > 0)); then
    echo "Skipped: what a waypoint enforces (the *-policy-waypoint policies, the reviews route, Services bound"
    echo "to backend/waypoint). ambientd does not serve waypoints yet, so backend/waypoint is never deployed and,"
    echo "as istiod does for a waypoint that is not ready, no Service is bound to it."
  fi
  if ((FAILED > 0)); then
    exit 1
  fi
}

cmd_down() {
  need kind
  if cluster_exists; then
    kind delete cluster --name "$CLUSTER"
  else
    say "there is no Kind cluster named $CLUSTER"
  fi
}

usage() {
  sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
  case "${1:-}" in
    up) cmd_up ;;
    load) cmd_load ;;
    demo) cmd_demo ;;
    verify) cmd_verify ;;
    down) cmd_down ;;
    -h | --help | help) usage ;;
    "") usage >&2; exit 2 ;;
    *)
      printf 'lab.sh: unknown command %s\n\n' "$1" >&2
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
