# Sourced by scripts/test and scripts/screenshots after _venv.sh: makes sure Debian's headless
# Chromium and its driver are installed, for the dashboard's browser tests
# (tests/server/dashboard/test_browser.py) and the README's screenshots. As root, installs
# Debian's chromium and chromium-driver packages when they are missing; otherwise says the
# browser tests will be skipped. Under CI (CI=true) a missing browser fails those tests.

_scalegroup_has_chromium() {
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]
}

if ! _scalegroup_has_chromium; then
  if apt_install "the dashboard's browser tests; a minute or two" chromium chromium-driver; then
    if ! _scalegroup_has_chromium; then
      echo "installed Debian's chromium and chromium-driver packages, but found no" \
        "/usr/bin/chromium and /usr/bin/chromedriver" >&2
      exit 1
    fi
  else
    echo "note: Chromium and its driver (/usr/bin/chromium, /usr/bin/chromedriver) are not" \
      "installed, so the dashboard's browser tests" \
      "$(missing_fate "${CI:-}" CI=true). Install them (sudo apt-get" \
      "install chromium chromium-driver)." >&2
  fi
fi
