# Peers of the e-mail gateway tests (gateways/email): swaks (SMTP client),
# postfix (a real MTA relaying a domain to the gateway; the tests run a
# private instance on a free port, so the system one may stay stopped) and
# mailpit (SMTP sink with a REST API). Sourced by .ci/run; idempotent.

email_need=()
command -v swaks >/dev/null 2>&1 || email_need+=(swaks)
if ! command -v postfix >/dev/null 2>&1 && [ ! -x /usr/sbin/postfix ]; then
  # postfix asks its configuration questions unless debconf has answers.
  echo "postfix postfix/main_mailer_type select Local only" | ${SUDO:-} debconf-set-selections
  echo "postfix postfix/mailname string uims.test" | ${SUDO:-} debconf-set-selections
  email_need+=(postfix)
fi
if [ ${#email_need[@]} -gt 0 ]; then
  apt_install "${email_need[@]}"
fi
unset email_need

email_gobin="$(go env GOPATH)/bin"
if ! command -v mailpit >/dev/null 2>&1 && [ ! -x "$email_gobin/mailpit" ]; then
  echo "   installing mailpit v1.33.1 (about 3 minutes)"
  go install github.com/axllent/mailpit@v1.33.1
fi
case ":$PATH:" in
  *":$email_gobin:"*) ;;
  *) export PATH="$PATH:$email_gobin" ;;
esac
unset email_gobin
