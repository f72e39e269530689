#!/bin/sh
# Install rk3s as a systemd service on this machine.
#
#   sudo packaging/install.sh [BINARY]      install (default BINARY: target/release/rk3s)
#   sudo packaging/install.sh --uninstall   stop and remove the service and the binary
#
# Env: INSTALL_RK3S_BIN_DIR (default /usr/local/bin), INSTALL_RK3S_SKIP_START=1
# to install without enabling and starting the service. State in /var/lib/rk3s
# and settings in /etc/rk3s are kept on uninstall; remove them by hand.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
bin_dir=${INSTALL_RK3S_BIN_DIR:-/usr/local/bin}
unit=/etc/systemd/system/rk3s.service

[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 1; }
have_systemd() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

if [ "${1:-}" = "--uninstall" ]; then
  if have_systemd; then
    systemctl disable --now rk3s.service 2>/dev/null || true
  fi
  rm -f "$unit" "$bin_dir/rk3s"
  have_systemd && systemctl daemon-reload
  echo "rk3s removed (kept /var/lib/rk3s and /etc/rk3s)"
  exit 0
fi

src=${1:-$here/../target/release/rk3s}
[ -x "$src" ] || { echo "install.sh: no binary at $src (run: cargo build --release)" >&2; exit 1; }

install -d -m 0755 "$bin_dir" /etc/rk3s
install -m 0755 "$src" "$bin_dir/rk3s"
sed "s|/usr/local/bin/rk3s|$bin_dir/rk3s|" "$here/rk3s.service" > "$unit"
chmod 0644 "$unit"
[ -e /etc/default/rk3s ] || printf '# RK3S_* settings for the rk3s service, e.g.\n# RK3S_HTTPS_PORT=6443\n' > /etc/default/rk3s
echo "installed $bin_dir/rk3s and $unit"

if ! have_systemd; then
  echo "systemd is not running here; start rk3s with: $bin_dir/rk3s server"
  exit 0
fi
systemctl daemon-reload
if [ "${INSTALL_RK3S_SKIP_START:-0}" = 1 ]; then
  echo "not started (INSTALL_RK3S_SKIP_START=1); start with: systemctl enable --now rk3s"
  exit 0
fi
systemctl enable --now rk3s.service
echo "rk3s started; export KUBECONFIG=/etc/rk3s/rk3s.yaml and run kubectl get ns"
