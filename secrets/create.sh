#!/bin/sh
# Makes the secret files compose.yaml mounts (docs/user-guide.md, "Running it"): each one that is missing is
# created with a random value, mode 0600, in this folder (mode 0700); an existing one is kept as it is.
# Values: passwords of 32 random bytes in hex, the artifact key (32 random bytes, URL-safe base64), an empty
# notify file (fill in apprise URLs to be told). Run it again any time: it only adds what is missing.
#
# The sftrenew containers read these files as the image's user. compose mounts them with this host's owner
# and mode, so that user must be their owner: run as yourself, this script writes SFTRENEW_UID=<your uid>
# to ../.env (compose builds the image with it); run as root, it gives the files to uid 10001, the image's
# default user. PostgreSQL and Redis read theirs as root.
set -eu
cd "$(dirname "$0")"
umask 077
chmod 700 .

made=""
create() { # NAME: the value on standard input
    if [ -e "$1" ]; then
        echo "secrets: $1 exists, kept"
        cat >/dev/null
        return
    fi
    cat >"$1.tmp"
    chmod 600 "$1.tmp"
    mv "$1.tmp" "$1"
    made="$made $1"
    echo "secrets: $1 created"
}
random_hex() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; echo; }

random_hex | create postgres_password
random_hex | create redis_password
random_hex | create flower_password
head -c 32 /dev/urandom | base64 | tr '+/' '-_' | create artifact_key
: | create notify

if [ "$(id -u)" = 0 ]; then
    chown 10001:10001 postgres_password redis_password flower_password artifact_key notify
    echo "secrets: owned by uid 10001, the image's user (build the image with the default SFTRENEW_UID)"
elif ! grep -qs '^SFTRENEW_UID=' ../.env; then
    echo "SFTRENEW_UID=$(id -u)" >>../.env
    echo "secrets: SFTRENEW_UID=$(id -u) written to .env: the image's user is you, and reads these files"
fi
[ -n "$made" ] && echo "secrets: keep a copy of artifact_key: without it, the sealed keys in the database are lost"
exit 0
