# Peers of the SMS gateway tests (gateways/sms): Debian kannel (bearerbox and
# smsbox bind as an ESME to our SMPP server) and the npm package smpp@0.5.1
# (a third-party SMS centre for our SMPP client), installed from the
# committed lock file into gateways/sms/testdata/nodesmsc. Sourced by
# .ci/run; idempotent and quiet.

sms_need=()
[ -x /usr/sbin/bearerbox ] && [ -x /usr/sbin/smsbox ] || sms_need+=(kannel)
command -v node >/dev/null 2>&1 || sms_need+=(nodejs)
command -v npm >/dev/null 2>&1 || sms_need+=(npm)
if [ ${#sms_need[@]} -gt 0 ]; then
  apt_install "${sms_need[@]}"
fi
unset sms_need

sms_node=gateways/sms/testdata/nodesmsc
if [ "$(cd "$sms_node" && node -p "try { require('./node_modules/smpp/package.json').version } catch (e) { '' }" 2>/dev/null)" != "0.5.1" ]; then
  (cd "$sms_node" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
unset sms_node
