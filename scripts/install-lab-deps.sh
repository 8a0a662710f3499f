#!/usr/bin/env bash
# Debian packages the convergence lab (npm run lab) needs, as root:
# the real daemons it boots and serves with, and the clients it checks with.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then echo "install-lab-deps.sh: run as root" >&2; exit 2; fi
export DEBIAN_FRONTEND=noninteractive
packages=(
  # on the nodes' side (also inside the booted trees) and for the checks
  keepalived mariadb-server mariadb-client galera-4 rsync
  # the boot server: DHCP/TFTP and NFS
  dnsmasq-base nfs-ganesha nfs-ganesha-vfs rpcbind
  # clients: NFS (libnfs), DHCP, TFTP and DNS (busybox), HTTP
  libnfs-utils busybox curl
  # the rogue Galera node's certificate of its own (rogue-galera-node), and the impostor
  # k3s server's CA and its HTTP server, Python's http.server (impostor-k3s-server)
  openssl python3
  # containers, namespaces, building the base
  systemd-container util-linux mount iproute2 mmdebstrap
  # emulated arm64 boards (netboot-arm64): the machine and its firmware
  qemu-system-arm u-boot-qemu
)
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}"
# Services the packages may start on the host are left alone: the lab runs its
# own copies inside its network namespaces, with their state on tmpfs.
