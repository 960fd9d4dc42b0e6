# shellcheck shell=bash
# The recipe of the Redis and PostgreSQL images, sourced by ./build; their
# tags are a hash of this file and of the entry points, so editing ./build
# rebuilds nothing.

# suite is the Debian release the images are made of.
suite=bookworm

# debian_mirror is the Debian archive apt already uses on this machine.
debian_mirror() {
	if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
	local m
	m=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) {print $i; exit}}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
	if [ -z "$m" ]; then
		m=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^https?:.*\/debian\/?$/) {print $i; exit}}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
	fi
	echo "${m:-http://deb.debian.org/debian}"
}

build_debian_rootfs() {
	local fs=$tmp/rootfs mirror
	mirror=$(debian_mirror)
	log "debootstrap --variant=minbase $suite from $mirror"
	debootstrap --variant=minbase "$suite" "$fs" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
		{ tail -30 "$tmp/debootstrap.log" >&2; return 1; }
	# No service may start while packages are installed, and PostgreSQL
	# must not create a cluster: the entry point makes one per container.
	printf '#!/bin/sh\nexit 101\n' >"$fs/usr/sbin/policy-rc.d"
	chmod +x "$fs/usr/sbin/policy-rc.d"
	mkdir -p "$fs/etc/postgresql-common"
	echo 'create_main_cluster = false' >"$fs/etc/postgresql-common/createcluster.conf"
	cp /etc/resolv.conf "$fs/etc/resolv.conf"
	cp /etc/hosts "$fs/etc/hosts"
	mount -t proc proc "$fs/proc"
	local apt=(env DEBIAN_FRONTEND=noninteractive LC_ALL=C apt-get -q -y -o Dpkg::Use-Pty=0)
	chroot "$fs" "${apt[@]}" update >"$tmp/apt.log" 2>&1 || { tail -30 "$tmp/apt.log" >&2; return 1; }
	chroot "$fs" "${apt[@]}" install --no-install-recommends --download-only redis-server postgresql-15 >>"$tmp/apt.log" 2>&1 ||
		{ tail -30 "$tmp/apt.log" >&2; return 1; }
	# Installed without a network: whatever a package script starts cannot
	# reach this machine's ports.
	unshare --net chroot "$fs" "${apt[@]}" install --no-install-recommends redis-server postgresql-15 >>"$tmp/apt.log" 2>&1 ||
		{ tail -30 "$tmp/apt.log" >&2; return 1; }
	umount "$fs/proc"
	chroot "$fs" "${apt[@]}" clean >/dev/null
	rm -rf "$fs"/var/lib/apt/lists/* "$fs"/usr/share/doc/* "$fs"/usr/share/man/* "$fs"/usr/share/locale/* \
		"$fs/usr/sbin/policy-rc.d" "$fs"/var/log/*.log
	: >"$fs/etc/resolv.conf"
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$fs/etc/hosts"
	install -m 0755 "$here/redis-entrypoint.sh" "$fs/usr/local/bin/redis-entrypoint.sh"
	install -m 0755 "$here/postgres-entrypoint.sh" "$fs/usr/local/bin/postgres-entrypoint.sh"
	mkdir -p "$fs/data" "$fs/docker-entrypoint-initdb.d" "$fs/var/lib/postgresql/data" "$fs/var/run/postgresql"
	chroot "$fs" chown redis:redis /data
	chroot "$fs" chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql
	chmod 700 "$fs/var/lib/postgresql/data"
	tar --numeric-owner -C "$fs" -cf "$tmp/debian.tar" .
}

# The root filesystem is imported once as a base image; each service's
# image adds its entry point and settings on top (no layer of its own).
import_base() {
	docker import "$tmp/debian.tar" "$1" >/dev/null
}

build_from() {
	local tag=$1
	shift
	printf '%s\n' "$@" | docker build -q -t "$tag" - >/dev/null 2>"$tmp/docker-build.log" ||
		{ cat "$tmp/docker-build.log" >&2; return 1; }
}

build_redis() {
	build_from "$2" "FROM $1" \
		'WORKDIR /data' \
		'EXPOSE 6379' \
		'VOLUME /data' \
		'ENTRYPOINT ["/usr/local/bin/redis-entrypoint.sh"]' \
		'CMD ["redis-server"]'
}

build_postgres() {
	build_from "$2" "FROM $1" \
		'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		'ENV PGDATA=/var/lib/postgresql/data' \
		'EXPOSE 5432' \
		'VOLUME /var/lib/postgresql/data' \
		'STOPSIGNAL SIGINT' \
		'ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]' \
		'CMD ["postgres"]'
}
