// Package sierradb is a typed client for SierraDB, the event store that
// esmill keeps its events in.
//
// A [Client] sends commands over a pool of go-redis connections speaking
// RESP3: [Client.Append] (EAPPEND), [Client.AppendMulti] (EMAPPEND, atomic
// within one partition), [Client.Get] (EGET), [Client.Scan] and
// [Client.ScanAll] (ESCAN), [Client.PartitionScan] (EPSCAN),
// [Client.StreamVersion] (ESVER), [Client.PartitionSequence] (EPSEQ),
// [Client.Ping] and [Client.Hello].
//
// Subscriptions ([Client.SubscribePartitions], [Client.SubscribeStream]) run
// on a connection of their own, because SierraDB delivers events as RESP3
// push frames that go-redis cannot carry. A [Subscription] delivers events in
// order per partition; the caller acknowledges what it has processed and the
// client turns that into EACK flow control, so the server's window never
// stalls a consumer that keeps acknowledging (tested: TestSubscribeSmallWindowNeverStalls). When the connection drops, the
// subscription reconnects and resumes after the last delivered position, with
// no gap and no duplicate (tested: TestSubscribeResumesAfterDroppedConnection).
//
// # Clusters
//
// A client made with [Config.Cluster] instead of Config.Addr works with a
// SierraDB cluster. SierraDB 0.3.1 reports no topology, so [ClusterConfig]
// gives every node's address and the cluster's shape; the client computes
// each partition's holders ([ClusterConfig.Holders]) and probes which
// holder coordinates it. Reads and appends go to the coordinator and fail
// over to other nodes; an append is retried only where a retry cannot
// write twice (exact expected versions), and read back when its outcome is
// unknown. A subscription runs one EPSUB per coordinating node, moves
// partitions when their coordinator changes and resumes after the last
// delivered event; if a partition's history changed under it, it ends with
// a [*DivergedError]. docs/cluster.md says what holds on SierraDB 0.3.1 and
// which tests show it.
//
// Partition math is exported so that callers can reason about placement
// without a server: [StreamPartitionKey] (UUIDv5 of the stream id),
// [PartitionHash], [PartitionID] and [NewEventID].
//
// Errors: a server error reply is a [*ServerError] carrying its code; a
// version conflict is a [*WrongExpectedVersionError]. Branch with errors.Is on
// [ErrWrongExpectedVersion], [ErrNotFound], [ErrInvalidArgument] and
// [ErrClosed], and ask [IsRetryable] whether sending again may succeed.
//
// Versions in this package follow one convention: a stream or partition with
// no event has version (or sequence) -1.
package sierradb
