// Package sierracluster starts real SierraDB clusters for tests: N sierradb
// processes, each in a network namespace of its own, joined by a bridge in a
// hub namespace, discovering each other by mDNS (the only discovery SierraDB
// 0.3.1 has). The cluster's subnet exists only inside those namespaces and
// the root namespace gets no interface at all, so no multicast and no
// cluster traffic reaches the machine's own interfaces. The test process
// reaches each node's client port through a forwarder on a loopback port
// whose connections are opened from inside the node's namespace.
//
// A cluster can stop, SIGKILL and restart a node (same data directory), cut
// a node off from the others (link down) and heal it, and block a node's
// clients. Everything is bounded in time and removed when the test ends (tested: TestCloseRemovesEverything, TestSweepRemovesStale);
// namespaces and directories left by crashed runs are swept by name
// (NamePrefix plus the owner's process id) at every start.
//
// It needs root and the ip tool (iproute2). Without them, or without the
// sierradb binary, Start skips the test, or fails it under CI=true.
//
// What SierraDB 0.3.1 offers a client on a cluster, as established by this
// package's tests, is written down in docs/cluster.md.
package sierracluster
