# Web gateway: Debian chromium drives the browser tests of gateways/web
# (browser_test.go, through chromedp). They fail in CI without it.
if ! command -v chromium >/dev/null 2>&1; then
  apt_install chromium chromium-driver fonts-dejavu-core
fi
