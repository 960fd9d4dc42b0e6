package telemetry

// Metric names, all of esmill's in one list (the README's Operations
// section describes each). Labels are low-cardinality only: entity type
// (esmill.category), command name, outcome, projection, partition, group,
// handler; entity ids are left out.
const (
	// Executor (package aggregate).
	MetricCommands        = "esmill.commands"         // counter {category, command, outcome}
	MetricCommandDuration = "esmill.command.duration" // histogram, s {category, command, outcome}
	MetricConflicts       = "esmill.conflicts"        // counter {category}
	MetricCacheHits       = "esmill.cache.hits"       // counter {category}
	MetricCacheMisses     = "esmill.cache.misses"     // counter {category}
	MetricCacheEvictions  = "esmill.cache.evictions"  // counter
	MetricCacheEntities   = "esmill.cache.entities"   // gauge
	MetricSnapshotLoads   = "esmill.snapshot.loads"   // counter {category}
	MetricSnapshotSaves   = "esmill.snapshot.saves"   // counter {category}

	// Command router (package cqrs).
	MetricRouterPartitions = "esmill.router.partitions" // gauge {group}: partitions held

	// Projections (package readmodel).
	MetricProjectionLag        = "esmill.projection.lag"        // gauge {projection, partition}
	MetricProjectionEvents     = "esmill.projection.events"     // counter {projection}
	MetricProjectionParked     = "esmill.projection.parked"     // counter {projection}
	MetricProjectionPartitions = "esmill.projection.partitions" // gauge {projection}: owned

	// Retry middleware (package middleware).
	MetricPoisoned = "esmill.messages.poisoned" // counter {handler, class}
)

// Outcomes of a command (the esmill.outcome label of MetricCommands).
const (
	OutcomeExecuted        = "executed"
	OutcomeIdempotent      = "idempotent"
	OutcomeRejected        = "rejected"
	OutcomeConflictRetried = "conflict_retried"
	OutcomeFailed          = "failed"
)
