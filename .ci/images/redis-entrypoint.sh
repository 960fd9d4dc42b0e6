#!/bin/sh
# Entry point of esmill's local Redis image (Debian's redis-server), shaped
# like the official image's so that testcontainers-go's redis module works
# unchanged: arguments that start with "-" or name a .conf file are
# redis-server's; protected mode is off (the port is only reachable through
# Docker's published port); as root, the server runs as the redis user.
set -e
case "$1" in
-* | *.conf) set -- redis-server "$@" ;;
esac
if [ "$1" = redis-server ]; then
	shift
	if [ "${1%.conf}" != "$1" ]; then
		conf=$1
		shift
		set -- redis-server "$conf" --protected-mode no "$@"
	else
		set -- redis-server --protected-mode no "$@"
	fi
	if [ "$(id -u)" = 0 ]; then
		find . \! -user redis -exec chown redis:redis '{}' +
		exec setpriv --reuid=redis --regid=redis --init-groups "$@"
	fi
fi
exec "$@"
