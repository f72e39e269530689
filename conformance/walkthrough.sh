#!/usr/bin/env bash
# Run the user's walkthrough (../shared/scenarios/seed-walkthrough.sh) against
# a fresh `rk3s server` (with its node agent running real containers) and a
# throw-away data dir, inside a network namespace of its own: the server, the
# pods, kubectl and curl all run in it, and its only interface is a veth pair
# kept inside it, so nothing leaves the machine.
#
#   conformance/walkthrough.sh [STEPS]       e.g. conformance/walkthrough.sh "1 2 3"
#
# Env: STEPS (default: the steps rk3s passes today, see DEFAULT_STEPS),
#      RK3S_BIN (default: target/release/rk3s, else target/debug/rk3s, else build),
#      SHARED (default: ../shared beside the repo), IMAGE/IMAGE2 (default
#      rk3s-test/web:1 and :2, built by conformance/images/build.py and
#      imported with `rk3s image import`), KEEP=1 keeps the data dir.
# Needs root (network namespace, containers).
# Exit status and last line are the walkthrough's ("walkthrough: N passed, N failed").
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${SHARED:-$repo/../shared}
script=$shared/scenarios/seed-walkthrough.sh
# 14 and 15 need NodePort services (kube-proxy); 25, 27-29 later issues.
DEFAULT_STEPS="1 2 3 4 5 6 7 8 9 10 11 12 13 16 17 18 19 20 21 22 23 24 26 30"
STEPS=${1:-${STEPS:-$DEFAULT_STEPS}}
[[ -f $script ]] || { echo "walkthrough: $script not found (set SHARED)" >&2; exit 2; }

bin=${RK3S_BIN:-}
if [[ -z $bin ]]; then
  for b in "$repo/target/release/rk3s" "$repo/target/debug/rk3s"; do
    [[ -x $b ]] && { bin=$b; break; }
  done
fi
if [[ -z $bin ]]; then
  (cd "$repo" && cargo build --release)
  bin=$repo/target/release/rk3s
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/rk3s-walk.XXXXXX")
pid=
# The namespace: a veth pair with both ends inside, the node on 100.64.0.2/24,
# a default route via 100.64.0.1 that leads nowhere.
ns=rk3s-walk-$$
ip netns add "$ns"
ip -n "$ns" link add v0 type veth peer name v1
ip -n "$ns" addr add 100.64.0.2/24 dev v0
ip -n "$ns" link set v0 up
ip -n "$ns" link set v1 up
ip -n "$ns" link set lo up
ip -n "$ns" route add default via 100.64.0.1
in_ns() { nsenter --net="/run/netns/$ns" -- "$@"; }
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  # Pods outlive the server by design: stop them and undo their mounts,
  # interfaces and cgroups, then whatever still runs in the namespace.
  in_ns "$bin" killall --data-dir "$work/data" >/dev/null 2>&1 || true
  for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  if [[ ${KEEP:-0} == 1 ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# The test images, imported into the node's image store before the start.
images=$(python3 "$repo/conformance/images/build.py")
for a in web_1 web_2; do
  "$bin" image import --data-dir "$work/data" "$images/archives/$a.docker.tar" >/dev/null
done

# A free loopback port: a random one nothing answers on.
port=
for _ in $(seq 50); do
  p=$((20000 + RANDOM % 40000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[[ -n $port ]] || { echo "walkthrough: no free port" >&2; exit 2; }

# No disk eviction thresholds or image GC: this machine's disk shows little
# space available to root, which would put the node under DiskPressure.
env -u RK3S_DATA_DIR -u RK3S_HTTPS_PORT -u RK3S_WRITE_KUBECONFIG \
  RK3S_EVICTION_HARD='memory.available<100Mi' RK3S_IMAGE_GC_HIGH_THRESHOLD=100 RK3S_IMAGE_GC_LOW_THRESHOLD=99 \
  nsenter --net="/run/netns/$ns" -- "$bin" server --data-dir "$work/data" --https-port "$port" --bind-address 127.0.0.1 \
  --write-kubeconfig "$work/kubeconfig.yaml" --node-name walkthrough >"$work/server.log" 2>&1 &
pid=$!

kubeconfig=$work/data/server/cred/admin.kubeconfig
for _ in $(seq 600); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "walkthrough: rk3s server exited early:" >&2; tail -30 "$work/server.log" >&2; exit 2
  fi
  if [[ -f $kubeconfig ]] && [[ $(in_ns curl -sk --noproxy '*' -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/readyz") == 200 ]]; then
    break
  fi
  sleep 0.1
done
[[ -f $kubeconfig ]] || { echo "walkthrough: server not ready in 60 s" >&2; tail -30 "$work/server.log" >&2; exit 2; }

# The reference kubectl (v1.33) first on PATH, if the machine has several.
mkdir -p "$work/bin"
if [[ -x /usr/lib/google-cloud-sdk/bin/kubectl.1.33 ]]; then
  ln -s /usr/lib/google-cloud-sdk/bin/kubectl.1.33 "$work/bin/kubectl"
fi

set +e
PATH="$work/bin:$PATH" HOME="$work" KUBECONFIG=$kubeconfig STEPS=$STEPS \
  IMAGE=${IMAGE:-rk3s-test/web:1} IMAGE2=${IMAGE2:-rk3s-test/web:2} \
  nsenter --net="/run/netns/$ns" -- bash "$script"
rc=$?
set -e
if [[ $rc != 0 ]]; then
  echo "--- rk3s server log (last 30 lines) ---" >&2; tail -30 "$work/server.log" >&2
fi
exit $rc
