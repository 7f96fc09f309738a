#!/usr/bin/env bash
# Make sure the local PostgreSQL the storage tests use is running; start it if it is not.
# The tests themselves skip (with the reason) only when no server can be reached at all.
set -u
if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; then
  exit 0
fi
if [ -d /etc/postgresql ] && command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "starting PostgreSQL ..."
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 && exit 0
    sleep 1
  done
fi
echo "warning: no PostgreSQL server on 127.0.0.1:5432; PostgreSQL tests will be skipped" >&2
exit 0
