# Peers of the voice gateway tests (gateways/voice): Debian baresip (a SIP
# user agent the tests run headless, with a configuration of their own in a
# temporary folder: aufile as the audio source, no sound card), sipsak
# (OPTIONS), espeak-ng (the mailbox greeting) and kamailio (a registrar and
# proxy with digest authentication; the tests run it in the foreground). None of them runs a
# service; policy-rc.d answering 101 keeps any that a dependency brings
# from starting at install. Sourced by .ci/run; idempotent and quiet.

voice_missing=""
for voice_p in baresip sipsak espeak-ng kamailio; do
  command -v "$voice_p" >/dev/null 2>&1 || voice_missing="$voice_missing $voice_p"
done
if [ -n "$voice_missing" ]; then
  voice_policy=/usr/sbin/policy-rc.d
  voice_had_policy=""
  [ -e "$voice_policy" ] && voice_had_policy=1
  if [ -z "$voice_had_policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | ${SUDO:-} tee "$voice_policy" >/dev/null
    ${SUDO:-} chmod +x "$voice_policy"
  fi
  # shellcheck disable=SC2086
  apt_install $voice_missing
  if [ -z "$voice_had_policy" ]; then ${SUDO:-} rm -f "$voice_policy"; fi
  unset voice_policy voice_had_policy
fi
unset voice_missing voice_p
