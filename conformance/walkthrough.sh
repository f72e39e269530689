#!/usr/bin/env bash
# Run the user's walkthrough (../shared/scenarios/seed-walkthrough.sh) against
# a fresh `rk3s server` on loopback, with a throw-away data dir.
#
#   conformance/walkthrough.sh [STEPS]       e.g. conformance/walkthrough.sh "1 2 4"
#
# Env: STEPS (default "1 2 4": the steps that need no node agent and no images),
#      RK3S_BIN (default: target/release/rk3s, else target/debug/rk3s, else build),
#      SHARED (default: ../shared beside the repo), IMAGE/IMAGE2 (default busybox:
#      placeholders; steps 1, 2 and 4 pull no images), KEEP=1 keeps the data dir.
# Exit status and last line are the walkthrough's ("walkthrough: N passed, N failed").
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${SHARED:-$repo/../shared}
script=$shared/scenarios/seed-walkthrough.sh
STEPS=${1:-${STEPS:-"1 2 4"}}
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
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  if [[ ${KEEP:-0} == 1 ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# A free loopback port: a random one nothing answers on.
port=
for _ in $(seq 50); do
  p=$((20000 + RANDOM % 40000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[[ -n $port ]] || { echo "walkthrough: no free port" >&2; exit 2; }

env -u RK3S_DATA_DIR -u RK3S_HTTPS_PORT -u RK3S_WRITE_KUBECONFIG \
  "$bin" server --data-dir "$work/data" --https-port "$port" --bind-address 127.0.0.1 \
  --write-kubeconfig "$work/kubeconfig.yaml" --node-name walkthrough >"$work/server.log" 2>&1 &
pid=$!

kubeconfig=$work/data/server/cred/admin.kubeconfig
for _ in $(seq 600); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "walkthrough: rk3s server exited early:" >&2; tail -30 "$work/server.log" >&2; exit 2
  fi
  if [[ -f $kubeconfig ]] && [[ $(curl -sk --noproxy '*' -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/readyz") == 200 ]]; then
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
  IMAGE=${IMAGE:-busybox} IMAGE2=${IMAGE2:-busybox} bash "$script"
rc=$?
set -e
if [[ $rc != 0 ]]; then
  echo "--- rk3s server log (last 30 lines) ---" >&2; tail -30 "$work/server.log" >&2
fi
exit $rc
