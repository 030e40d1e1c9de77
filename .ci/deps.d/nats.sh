# The nats CLI (natscli v0.5.0), a NATS client nobody here wrote: the trust
# tests of internal/system watch the fabric with it, with and without the
# operator's credentials. Go-installed into GOPATH/bin. Sourced by .ci/run;
# idempotent and quiet.
if ! command -v nats >/dev/null 2>&1 && [ ! -x "$(go env GOPATH)/bin/nats" ]; then
  go install github.com/nats-io/natscli/nats@v0.5.0
fi
