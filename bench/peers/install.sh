#!/bin/sh
# Installs what bench/peers compares the library with, only what is missing, never system-wide
# Python packages: supervisord and circus into the venv build/peers-venv (pip), PM2 into
# build/peers-npm (npm), s6 and Go with apt-get (as root) if their commands are not there.
# A peer whose install fails is reported and later skipped by the driver; this script goes on.
set -u
BUILD=${BUILD:-build}
VENV=$BUILD/peers-venv
NPM_DIR=$BUILD/peers-npm

missing_apt=""
command -v s6-svscan >/dev/null 2>&1 || missing_apt="$missing_apt s6"
command -v go >/dev/null 2>&1 || missing_apt="$missing_apt golang-go"
command -v npm >/dev/null 2>&1 || missing_apt="$missing_apt npm"
if [ -n "$missing_apt" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "install.sh: apt-get install$missing_apt"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing_apt \
            || echo "install.sh: apt-get failed; those peers will be skipped" >&2
    else
        echo "install.sh: missing$missing_apt (not root or no apt-get); those peers will be skipped" >&2
    fi
fi

if [ ! -x "$VENV/bin/supervisord" ] || [ ! -x "$VENV/bin/circusd" ]; then
    echo "install.sh: pip install supervisor circus into $VENV"
    python3 -m venv "$VENV" && PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/pip" install -q supervisor circus \
        || echo "install.sh: pip failed; supervisord and circus will be skipped" >&2
fi

if [ ! -x "$NPM_DIR/node_modules/.bin/pm2" ] && command -v npm >/dev/null 2>&1; then
    echo "install.sh: npm install pm2 into $NPM_DIR"
    mkdir -p "$NPM_DIR" && npm install --prefix "$NPM_DIR" --no-audit --no-fund --silent pm2 \
        || echo "install.sh: npm failed; PM2 will be skipped" >&2
fi
exit 0
