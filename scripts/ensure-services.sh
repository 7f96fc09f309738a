#!/usr/bin/env bash
# Make sure the local PostgreSQL the storage tests use is running; start it if it is not.
# The tests themselves skip (with the reason) only when no server can be reached at all.
# Also installs Debian's chromium for the review-page browser test (Playwright's own browser
# download does not work here), and Debian's haproxy for the multi-replica test (three replicas
# behind a real load balancer), and SIPp/baresip/kamailio for the SIP tests; quiet when they are
# already installed.
set -u

ensure_haproxy() {
  command -v haproxy >/dev/null 2>&1 && return 0
  [ -x /usr/sbin/haproxy ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing haproxy for the multi-replica test ..."
    if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy) >/tmp/voiceid-haproxy-install.log 2>&1; then
      return 0
    fi
    echo "warning: apt-get install haproxy failed (see /tmp/voiceid-haproxy-install.log)" >&2
  fi
  echo "warning: haproxy is missing and cannot be installed here; the multi-replica test will be skipped" >&2
}
ensure_haproxy

ensure_chromium() {
  [ -x /usr/bin/chromium ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium for the browser test ..."
    if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/tmp/voiceid-chromium-install.log 2>&1; then
      return 0
    fi
    echo "warning: apt-get install chromium failed (see /tmp/voiceid-chromium-install.log)" >&2
  fi
  echo "warning: /usr/bin/chromium is missing and cannot be installed here; the browser test will be skipped" >&2
}
ensure_chromium

# Real SIP software for the SIP/SIPREC tests (tests/telephony_adapter/test_sip.py): SIPp (Debian's
# sip-tester, with rtp_stream), baresip (a SIP user agent) and kamailio (a SIP proxy).
ensure_sip_tools() {
  command -v sipp >/dev/null 2>&1 && command -v baresip >/dev/null 2>&1 && [ -x /usr/sbin/kamailio ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing sip-tester (SIPp), baresip and kamailio for the SIP tests ..."
    if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester baresip kamailio) >/tmp/voiceid-sip-install.log 2>&1; then
      return 0
    fi
    echo "warning: apt-get install sip-tester baresip kamailio failed (see /tmp/voiceid-sip-install.log)" >&2
  fi
  echo "warning: SIPp/baresip/kamailio are missing and cannot be installed here; the SIP tests will be skipped" >&2
}
ensure_sip_tools
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
