// Package rediscluster starts real Redis Clusters for tests: Debian's
// redis-server in cluster mode on free loopback ports (client and cluster
// bus ports both chosen free), joined with redis-cli --cluster create,
// 3 masters with one replica each by default, append-only files fsynced on
// every write. A test can SIGKILL a master and wait until its replica has
// been promoted (KillMaster reports how long that took), and start the old
// master again on its port and directory, where it rejoins as a replica.
// Everything is removed when the test ends; processes die with the test
// process.
//
// Without redis-server or redis-cli, Start skips the test, or fails it
// under CI=true.
package rediscluster
