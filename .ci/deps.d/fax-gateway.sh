# Peers of the fax gateway tests (gateways/fax): HylaFAX (hfaxd, faxq,
# faxstat, faxrm), which hfaxdtest runs on a spool of its own in a
# temporary folder; libtiff-tools (tiffinfo) and ImageMagick (convert
# -compress Fax) make and read the faxes. The package's own service is
# not needed: policy-rc.d keeps it from starting at install, as
# xmpp.sh does for prosody. Sourced by .ci/run; idempotent and quiet.

if ! command -v hfaxd >/dev/null 2>&1 || ! command -v faxstat >/dev/null 2>&1 || ! command -v tiffinfo >/dev/null 2>&1 || ! command -v convert >/dev/null 2>&1; then
  fax_policy=/usr/sbin/policy-rc.d
  fax_had_policy=""
  [ -e "$fax_policy" ] && fax_had_policy=1
  if [ -z "$fax_had_policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | ${SUDO:-} tee "$fax_policy" >/dev/null
    ${SUDO:-} chmod +x "$fax_policy"
  fi
  apt_install hylafax-server hylafax-client libtiff-tools imagemagick
  if [ -z "$fax_had_policy" ]; then ${SUDO:-} rm -f "$fax_policy"; fi
  unset fax_policy fax_had_policy
fi
# a system HylaFAX left running holds 4559; the tests use their own ports
if command -v update-rc.d >/dev/null 2>&1; then
  ${SUDO:-} update-rc.d hylafax disable >/dev/null 2>&1 || true
fi
