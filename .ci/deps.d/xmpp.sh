# Peer of the XMPP bridge tests (gateways/xmpp): Debian prosody, which the
# tests run themselves (xmpptest.Start: a configuration of their own in a
# temporary folder, random ports on 127.0.0.1, prosody -F). The package's own
# service is not needed: it is kept from starting at install, and stopped if
# it runs. Sourced by .ci/run; idempotent and quiet.

if ! command -v prosody >/dev/null 2>&1 || ! command -v prosodyctl >/dev/null 2>&1; then
  # policy-rc.d answering 101 keeps invoke-rc.d from starting the service.
  xmpp_policy=/usr/sbin/policy-rc.d
  xmpp_had_policy=""
  [ -e "$xmpp_policy" ] && xmpp_had_policy=1
  if [ -z "$xmpp_had_policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | ${SUDO:-} tee "$xmpp_policy" >/dev/null
    ${SUDO:-} chmod +x "$xmpp_policy"
  fi
  apt_install prosody
  if [ -z "$xmpp_had_policy" ]; then ${SUDO:-} rm -f "$xmpp_policy"; fi
  unset xmpp_policy xmpp_had_policy
fi
# A system prosody left running (an earlier install) holds 5222 and 5347;
# the tests use other ports, but stop it so that nothing answers there.
if [ -f /run/prosody/prosody.pid ] && kill -0 "$(cat /run/prosody/prosody.pid)" 2>/dev/null; then
  ${SUDO:-} prosodyctl stop >/dev/null 2>&1 || ${SUDO:-} kill "$(cat /run/prosody/prosody.pid)" 2>/dev/null || true
fi
if command -v update-rc.d >/dev/null 2>&1; then
  ${SUDO:-} update-rc.d prosody disable >/dev/null 2>&1 || true
fi
