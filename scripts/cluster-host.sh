#!/usr/bin/env bash
# `make cluster-host`: lets a non-root user run the cluster tests, as on a
# GitHub runner. The CDN double listens on 127.0.0.2:443 under the CDNs' real
# host names (a port below 1024), and the test node runs the Job's containers
# in bubblewrap sandboxes with their own user namespace, which Ubuntu 24.04's
# AppArmor forbids unprivileged users by default. As root (CI here) there is
# nothing to change.
set -euo pipefail
if [ "$(id -u)" -eq 0 ]; then
  echo "cluster-host: root may bind port 443 and create user namespaces; nothing to change"
  exit 0
fi
sudo sysctl -q -w net.ipv4.ip_unprivileged_port_start=443
if [ -e /proc/sys/kernel/apparmor_restrict_unprivileged_userns ]; then
  sudo sysctl -q -w kernel.apparmor_restrict_unprivileged_userns=0
fi
echo "cluster-host: unprivileged users may bind port 443 and create user namespaces"
