# Peer of the Node.js echo bot gateway tests (examples/botjs): Node.js and
# npm, and the npm package nats@2.29.3 installed from the committed lock
# file into examples/botjs/node_modules. Sourced by .ci/run; idempotent and
# quiet.

botjs_need=()
command -v node >/dev/null 2>&1 || botjs_need+=(nodejs)
command -v npm >/dev/null 2>&1 || botjs_need+=(npm)
if [ ${#botjs_need[@]} -gt 0 ]; then
  apt_install "${botjs_need[@]}"
fi
unset botjs_need

botjs_dir=examples/botjs
if [ "$(cd "$botjs_dir" && node -p "try { require('./node_modules/nats/package.json').version } catch (e) { '' }" 2>/dev/null)" != "2.29.3" ]; then
  (cd "$botjs_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
unset botjs_dir
