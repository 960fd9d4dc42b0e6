# shellcheck shell=bash
# The recipe of the real-SierraDB image, sourced by ./build; the image's tag
# is a hash of this file and of the binary, so editing ./build rebuilds
# nothing.

# build_sierradb_rootfs BIN TAG builds the image TAG from the sierradb
# binary BIN: the binary, the shared libraries ldd names, a passwd entry for
# the sierradb user and /app/data owned by it, and nothing else.
build_sierradb_rootfs() {
	local bin=$1 fs=$tmp/sierradb
	mkdir -p "$fs"/{etc,tmp,app/data,home/sierradb,usr/local/bin}
	install -m 0755 "$bin" "$fs/usr/local/bin/sierradb"
	# Every shared library ldd names, under the path the loader looks for.
	local lib
	for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
		install -D -m 0755 "$(readlink -f "$lib")" "$fs$lib"
	done
	printf 'root:x:0:0:root:/root:/sbin/nologin\nsierradb:x:999:999:SierraDB:/home/sierradb:/sbin/nologin\n' >"$fs/etc/passwd"
	printf 'root:x:0:\nsierradb:x:999:\n' >"$fs/etc/group"
	chmod 1777 "$fs/tmp"
	chown -R 999:999 "$fs/app" "$fs/home/sierradb"
	tar --numeric-owner -C "$fs" -cf "$tmp/sierradb.tar" .
	docker import \
		--change 'USER sierradb' \
		--change 'WORKDIR /app' \
		--change 'EXPOSE 9090' \
		--change 'ENTRYPOINT ["/usr/local/bin/sierradb"]' \
		--change 'CMD ["--dir", "/app/data", "--client-address", "0.0.0.0:9090"]' \
		"$tmp/sierradb.tar" "$2" >/dev/null
}
