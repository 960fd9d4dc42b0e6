package readmodel

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/google/uuid"
)

// Position is where an event sits in SierraDB: its partition and its
// sequence within that partition.
type Position struct {
	Partition uint16
	Sequence  uint64
}

func (p Position) String() string { return fmt.Sprintf("%d:%d", p.Partition, p.Sequence) }

// Advance moves one partition's checkpoint of a projection: from Prev (the
// last applied sequence the committer believes is stored, or -1 when it
// believes there is none) to Next. A store applies it only if the stored
// checkpoint still equals Prev (compare-and-set); otherwise the commit fails
// with [ErrCheckpointConflict].
type Advance struct {
	Partition uint16
	Prev      int64
	Next      uint64
}

// Cause says why an event was parked.
type Cause string

const (
	// CauseDecode: the event's id, payload or metadata did not decode into
	// its entity type.
	CauseDecode Cause = "decode"
	// CauseHandler: a handler kept failing on the event (or returned an
	// error marked poison or final, see esmill.Classify).
	CauseHandler Cause = "handler"
	// CauseUnknown: the event's name is not registered in the entity type
	// of a handled category, and the projection's [Config.UnknownEvents]
	// is [PoisonUnknown].
	CauseUnknown Cause = "unknown-event"
	// CauseHeld: the event was not applied because an earlier event of its
	// stream is parked and the projection's [Config.Hold] is [HoldEntity].
	// It is applied, in stream order, once that event is replayed or
	// skipped.
	CauseHeld Cause = "held"
)

// ParkedEvent is a poison event set aside with the reason, so that the
// projection could go on. It keeps the raw event, to be inspected or
// replayed by hand.
type ParkedEvent struct {
	Position
	EventID       uuid.UUID
	StreamID      string
	StreamVersion uint64
	Name          string
	Payload       []byte
	Metadata      []byte
	Cause         Cause
	Reason        string
	Attempts      int
	ParkedAt      time.Time
}

// Store keeps the checkpoints of projections, their parked events, and
// lets their handlers write the read model through a transaction handle of
// type T (a *sql.Tx, a pgx.Tx, or a handle of the store's own). One store
// may hold many projections; each has its own checkpoints.
//
// Every method is safe for concurrent use. The contract, checked by package
// checkpointtest for every store:
//   - Checkpoints returns what the last successful Commit left, and survives
//     a restart when the store is durable.
//   - Writes made through [Tx.Handle] and the checkpoint advance become
//     visible together or not at all; where a store cannot promise that
//     (MongoDB without transactions) it guarantees instead that re-applying
//     an event at or below a position a document has recorded changes
//     nothing, which gives the same result after a replay.
//   - Commit is a compare-and-set: of two transactions advancing the same
//     partition from the same checkpoint, at most one succeeds; the other
//     fails with [ErrCheckpointConflict].
type Store[T any] interface {
	// Checkpoints returns the projection's last applied sequence per
	// partition; partitions with nothing applied yet are absent.
	Checkpoints(ctx context.Context, projection string) (map[uint16]uint64, error)
	// Begin starts a batch transaction for the projection.
	Begin(ctx context.Context, projection string) (Tx[T], error)
	// Parked lists the projection's parked events in position order.
	Parked(ctx context.Context, projection string) ([]ParkedEvent, error)
	// Resolved lists the projection's parked events that were replayed or
	// skipped, in position order, each with its [Resolution].
	Resolved(ctx context.Context, projection string) ([]ResolvedEvent, error)
	// Reset forgets the projection: its checkpoints, parked and resolved
	// events, and
	// its read model, which drop removes (drop may be nil for stores that
	// own the model, memory and file). No runner of the projection may be
	// running.
	Reset(ctx context.Context, projection string, drop func(ctx context.Context, tx T) error) error
}

// Tx is one batch transaction of a [Store]. It is used by one goroutine.
type Tx[T any] interface {
	// Handle returns what the handlers of the event at pos write through.
	// Stores that guard writes per position (MongoDB) bind it to pos;
	// the others return the same transaction for every position.
	Handle(pos Position) T
	// Park records a poison event, committed with the checkpoint. Parking
	// a position already parked replaces its cause, reason, attempts and
	// time.
	Park(ctx context.Context, ev ParkedEvent) error
	// Unpark takes the event parked at pos off the projection's parked
	// list in this transaction, records r as how it was resolved (see
	// [Store.Resolved]) and returns the event as it was parked. It fails
	// with [ErrNotParked] when no event is parked there. Of two
	// transactions that unpark one event, at most one commits; the other
	// fails here, or at Commit with ErrNotParked or
	// [ErrCheckpointConflict]. Stores that guard writes per position
	// (MongoDB) guard the writes made through Handle(pos) of an unparked
	// position per replay instead, since the partition has moved past it.
	Unpark(ctx context.Context, pos Position, r Resolution) (ParkedEvent, error)
	// Commit applies the advances (compare-and-set) and commits. On any
	// error nothing is committed, except where the store documents
	// otherwise; an ambiguous failure (the connection dropped during the
	// commit) may have committed.
	Commit(ctx context.Context, advances []Advance) error
	// Rollback abandons the transaction. It is safe after Commit.
	Rollback(ctx context.Context) error
}

// Action is what was done with a parked event.
type Action string

const (
	// Replayed: the event was applied through the projection's handlers
	// (after they were fixed), in the transaction that took it off the
	// parked list.
	Replayed Action = "replayed"
	// Skipped: the event was dropped without being applied.
	Skipped Action = "skipped"
)

// Resolution records how a parked event left the parked list: what was
// done, by whom, why and when.
type Resolution struct {
	Action Action
	// By names who did it (a user, a tool); Note says why. Both are free
	// text, kept as given.
	By   string
	Note string
	At   time.Time
}

// ResolvedEvent is a parked event that was replayed or skipped, with the
// record of it.
type ResolvedEvent struct {
	ParkedEvent
	Resolution Resolution
}

// ServerRecorder is implemented by stores that keep, with a projection's
// checkpoints, the identity of the SierraDB server whose events they count
// (sierradb.Client.ServerID). A runner records it when it starts and
// refuses to go on from checkpoints recorded on another server
// ([DivergedError]). Every store of this module implements it; for a
// store that does not, the runner checks the identity only within its own
// run. [Store.Reset] forgets the identity with the checkpoints.
type ServerRecorder interface {
	// RecordServer records id as the projection's server unless one is
	// recorded already, and returns the one recorded (id, or the older
	// one). It is atomic: of racing callers with different ids, all get
	// the same answer.
	RecordServer(ctx context.Context, projection, id string) (string, error)
}

// PartitionBeginner is implemented by stores whose Begin serialises every
// transaction of a projection (so that two runners racing on one
// projection fail early, see package postgres) and that can serialise per
// partition instead. A runner sharing the partitions ([Config.Leases])
// begins its batches with BeginPartitions, so that instances working on
// different partitions do not wait for each other.
type PartitionBeginner[T any] interface {
	// BeginPartitions is Begin for a batch that advances exactly the
	// given partitions (sorted, without duplicates). It waits while a
	// transaction begun with Begin is in flight, and Begin waits for it:
	// [Admin] resolves a parked event with BeginPartitions of its
	// partition, which so never runs beside a batch of that partition,
	// whether its runner shares the partitions or not (tested:
	// TestReplayWaitsForTheOwnersBatch).
	BeginPartitions(ctx context.Context, projection string, partitions []uint16) (Tx[T], error)
}

// TransientChecker is implemented by stores that can tell a handler error
// caused by the database's own concurrency control (a deadlock, a
// serialization failure), which retrying the batch cures. The runner
// retries such a batch without counting the failure against
// [Config.MaxAttempts], as if the error were marked esmill.MarkTransient.
type TransientChecker interface {
	IsTransient(err error) bool
}

// Switcher is implemented by stores that keep a pointer from a read-model
// name (such as "balances") to the projection that serves it (such as
// "balances@v2"): the blue/green switch. Readers look the pointer up to
// choose the tables, collections or file to read.
type Switcher interface {
	// SetActive points name at projection.
	SetActive(ctx context.Context, name, projection string) error
	// Active returns the projection name points at, or an error matching
	// [ErrNoActive].
	Active(ctx context.Context, name string) (string, error)
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_@-]{0,99}$`)

// ValidateName checks a projection name: 1 to 100 bytes of ASCII letters,
// digits, '_', '@' and '-', starting with a letter or digit. The name is
// used in file names and MongoDB field paths, hence the narrow alphabet.
// A version suffix such as "balances@v2" is the convention for blue/green
// rebuilds.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("readmodel: projection name %q must be 1 to 100 of [A-Za-z0-9_@-], starting with a letter or digit: %w", name, ErrInvalidName)
	}
	return nil
}

// Lister is implemented by stores that can name the projections they
// hold: those with checkpoints or parked events. Admin tools use it to
// show every projection of a store without being told their names. The
// postgres and sqlite stores implement it.
type Lister interface {
	// Projections returns the names, sorted.
	Projections(ctx context.Context) ([]string, error)
}
