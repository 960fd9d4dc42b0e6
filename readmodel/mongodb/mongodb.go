package mongodb

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/esmill/esmill/readmodel"
)

// TxMode says whether a [Store] uses multi-document transactions.
type TxMode int

const (
	// Auto uses transactions when the server is a replica set member or a
	// mongos, and does without them otherwise.
	Auto TxMode = iota
	// Always uses transactions; New fails if the server has none.
	Always
	// This mode does without transactions, relying on the position guards.
	Never
)

// Config configures a [Store].
type Config struct {
	// CollectionPrefix names the store's collections: <prefix>checkpoints,
	// <prefix>parked, <prefix>resolved, <prefix>active, <prefix>servers,
	// <prefix>lease_members and <prefix>lease_owners. Default: "esmill_".
	CollectionPrefix string
	// Transactions says whether to use transactions. Default: Auto.
	Transactions TxMode
}

var prefixRE = regexp.MustCompile(`^[A-Za-z0-9_]{0,40}$`)

// Validate reports every problem of c.
func (c Config) Validate() error {
	var errs []error
	if !prefixRE.MatchString(c.CollectionPrefix) {
		errs = append(errs, fmt.Errorf("mongodb: CollectionPrefix %q must be letters, digits and '_'", c.CollectionPrefix))
	}
	if c.Transactions < Auto || c.Transactions > Never {
		errs = append(errs, fmt.Errorf("mongodb: unknown Transactions %d", c.Transactions))
	}
	return errors.Join(errs...)
}

// Store keeps checkpoints in MongoDB and gives handlers a [*Handle]. It
// implements readmodel.Store[*Handle] and readmodel.Switcher.
type Store struct {
	db       *mongo.Database
	prefix   string
	txns     bool
	mu       sync.Mutex
	locks    map[string]chan struct{} // one batch at a time per projection
	cps      *mongo.Collection
	parked   *mongo.Collection
	resolved *mongo.Collection
	active   *mongo.Collection
	servers  *mongo.Collection
}

// New returns a store in db. It asks the server whether it supports
// transactions (see [Config.Transactions]). The store does not disconnect
// db's client.
func New(ctx context.Context, db *mongo.Database, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.CollectionPrefix == "" {
		cfg.CollectionPrefix = "esmill_"
	}
	s := &Store{
		db:       db,
		prefix:   cfg.CollectionPrefix,
		locks:    make(map[string]chan struct{}),
		cps:      db.Collection(cfg.CollectionPrefix + "checkpoints"),
		parked:   db.Collection(cfg.CollectionPrefix + "parked"),
		resolved: db.Collection(cfg.CollectionPrefix + "resolved"),
		active:   db.Collection(cfg.CollectionPrefix + "active"),
		servers:  db.Collection(cfg.CollectionPrefix + "servers"),
	}
	switch cfg.Transactions {
	case Never:
	case Always:
		s.txns = true
	default:
		ok, err := supportsTransactions(ctx, db.Client())
		if err != nil {
			return nil, err
		}
		s.txns = ok
	}
	return s, nil
}

func supportsTransactions(ctx context.Context, c *mongo.Client) (bool, error) {
	var hello bson.M
	err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello)
	if err != nil {
		if err2 := c.Database("admin").RunCommand(ctx, bson.D{{Key: "isMaster", Value: 1}}).Decode(&hello); err2 != nil {
			return false, fmt.Errorf("mongodb: hello: %w", err)
		}
	}
	if _, ok := hello["setName"]; ok {
		return true, nil
	}
	return hello["msg"] == "isdbgrid", nil
}

// Transactions reports whether the store uses multi-document transactions.
func (s *Store) Transactions() bool { return s.txns }

// Database returns the database, for reading the read model.
func (s *Store) Database() *mongo.Database { return s.db }

// PositionField returns the field (a dotted path) in which documents
// record the last applied sequence of a projection's partition.
func PositionField(projection string, partition uint16) string {
	return "_esmill." + projection + ".p" + strconv.Itoa(int(partition))
}

// linkDoc is one checkpoint advance of a partition: from prev to next. Its
// _id names the projection, the partition and prev, so that of two
// commits advancing a partition from the same checkpoint only one can
// insert it: the compare-and-set rests on the _id's unique index, which is
// atomic even on servers whose filtered updates are not (FerretDB). The
// partition's checkpoint is the largest next of its links; older links
// are pruned.
type linkDoc struct {
	ID         string `bson:"_id"`
	Projection string `bson:"projection"`
	Partition  int32  `bson:"partition"`
	Prev       int64  `bson:"prev"`
	Next       int64  `bson:"next"`
}

func linkID(projection string, partition uint16, prev int64) string {
	return fmt.Sprintf("%s/%d/%d", projection, partition, prev)
}

// Checkpoints implements [readmodel.Store].
func (s *Store) Checkpoints(ctx context.Context, projection string) (map[uint16]uint64, error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return nil, err
	}
	return s.checkpoints(ctx, projection)
}

func (s *Store) checkpoints(ctx context.Context, projection string) (map[uint16]uint64, error) {
	cur, err := s.cps.Find(ctx, bson.D{{Key: "projection", Value: projection}})
	if err != nil {
		return nil, fmt.Errorf("mongodb: checkpoints: %w", err)
	}
	var links []linkDoc
	if err := cur.All(ctx, &links); err != nil {
		return nil, fmt.Errorf("mongodb: checkpoints: %w", err)
	}
	cps := make(map[uint16]uint64)
	for _, l := range links {
		p := uint16(l.Partition)
		if c, ok := cps[p]; !ok || uint64(l.Next) > c {
			cps[p] = uint64(l.Next)
		}
	}
	return cps, nil
}

// Begin implements [readmodel.Store]: with transactions it starts a
// session and a transaction; without, the batch's writes apply as they are
// made (see the package documentation).
func (s *Store) Begin(ctx context.Context, projection string) (readmodel.Tx[*Handle], error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return nil, err
	}
	unlock, err := s.lock(ctx, projection)
	if err != nil {
		return nil, err
	}
	t := &Tx{s: s, projection: projection, unlock: unlock}
	if s.txns {
		sess, err := s.db.Client().StartSession()
		if err != nil {
			unlock()
			return nil, fmt.Errorf("mongodb: start session: %w", err)
		}
		if err := sess.StartTransaction(); err != nil {
			sess.EndSession(ctx)
			unlock()
			return nil, fmt.Errorf("mongodb: start transaction: %w", err)
		}
		t.sess = sess
	}
	return t, nil
}

// lock waits until no other batch of the projection runs in this store:
// within a process, the batches of one projection write one after another
// (see "Two runners" in the package documentation).
func (s *Store) lock(ctx context.Context, projection string) (func(), error) {
	s.mu.Lock()
	l := s.locks[projection]
	if l == nil {
		l = make(chan struct{}, 1)
		s.locks[projection] = l
	}
	s.mu.Unlock()
	select {
	case l <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-l }) }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Reset implements [readmodel.Store]. It does not use a transaction (drop
// may drop collections): it deletes the checkpoints first, then runs drop,
// then deletes the parked events, so that an interrupted Reset leaves a
// projection that replays from the start; run it again to finish.
func (s *Store) Reset(ctx context.Context, projection string, drop func(ctx context.Context, h *Handle) error) error {
	if err := readmodel.ValidateName(projection); err != nil {
		return err
	}
	unlock, err := s.lock(ctx, projection)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := s.cps.DeleteMany(ctx, bson.D{{Key: "projection", Value: projection}}); err != nil {
		return fmt.Errorf("mongodb: reset: %w", err)
	}
	if drop != nil {
		if err := drop(ctx, &Handle{s: s, projection: projection}); err != nil {
			return err
		}
	}
	for _, c := range []*mongo.Collection{s.parked, s.resolved} {
		if _, err := c.DeleteMany(ctx, bson.D{{Key: "projection", Value: projection}}); err != nil {
			return fmt.Errorf("mongodb: reset: %w", err)
		}
	}
	if _, err := s.servers.DeleteOne(ctx, bson.D{{Key: "_id", Value: projection}}); err != nil {
		return fmt.Errorf("mongodb: reset: %w", err)
	}
	return nil
}

// RecordServer implements [readmodel.ServerRecorder]: one document per
// projection in <prefix>servers, inserted once (the _id's unique index
// decides a race).
func (s *Store) RecordServer(ctx context.Context, projection, id string) (string, error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return "", err
	}
	_, err := s.servers.InsertOne(ctx, bson.D{{Key: "_id", Value: projection}, {Key: "server", Value: id}})
	if err == nil {
		return id, nil
	}
	if !mongo.IsDuplicateKeyError(err) {
		return "", fmt.Errorf("mongodb: record server: %w", err)
	}
	var doc struct {
		Server string `bson:"server"`
	}
	if err := s.servers.FindOne(ctx, bson.D{{Key: "_id", Value: projection}}).Decode(&doc); err != nil {
		return "", fmt.Errorf("mongodb: record server: %w", err)
	}
	return doc.Server, nil
}

// SetActive implements [readmodel.Switcher].
func (s *Store) SetActive(ctx context.Context, name, projection string) error {
	if err := readmodel.ValidateName(projection); err != nil {
		return err
	}
	_, err := s.active.UpdateOne(ctx, bson.D{{Key: "_id", Value: name}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "projection", Value: projection}}}}, options.UpdateOne().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("mongodb: set active: %w", err)
	}
	return nil
}

// Active implements [readmodel.Switcher].
func (s *Store) Active(ctx context.Context, name string) (string, error) {
	var doc struct {
		Projection string `bson:"projection"`
	}
	err := s.active.FindOne(ctx, bson.D{{Key: "_id", Value: name}}).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return "", readmodel.ErrNoActive
	}
	if err != nil {
		return "", fmt.Errorf("mongodb: active: %w", err)
	}
	return doc.Projection, nil
}

// Tx is a batch transaction of a [Store].
type Tx struct {
	s          *Store
	projection string
	sess       *mongo.Session // nil without transactions
	unlock     func()
	done       bool
	// unparked are the events Unpark took, deleted at Commit without
	// transactions (see Unpark).
	unparked []unparked
}

func (t *Tx) ctx(ctx context.Context) context.Context {
	if t.sess == nil {
		return ctx
	}
	return mongo.NewSessionContext(ctx, t.sess)
}

// Handle implements [readmodel.Tx]: the handle is bound to pos.
func (t *Tx) Handle(pos readmodel.Position) *Handle {
	return &Handle{s: t.s, tx: t, projection: t.projection, pos: pos, bound: true, replay: t.isUnparked(pos)}
}

// Park implements [readmodel.Tx]. Without transactions the parked event is
// written at once (an idempotent upsert).
func (t *Tx) Park(ctx context.Context, ev readmodel.ParkedEvent) error {
	d := parkedDoc{
		ID:         fmt.Sprintf("%s/%d/%d", t.projection, ev.Partition, ev.Sequence),
		Projection: t.projection, Partition: int32(ev.Partition), Sequence: int64(ev.Sequence),
		EventID: ev.EventID.String(), StreamID: ev.StreamID, StreamVersion: int64(ev.StreamVersion), Name: ev.Name,
		Payload: ev.Payload, Metadata: ev.Metadata, Cause: string(ev.Cause), Reason: ev.Reason,
		Attempts: int32(ev.Attempts), ParkedAt: ev.ParkedAt,
	}
	_, err := t.s.parked.ReplaceOne(t.ctx(ctx), bson.D{{Key: "_id", Value: d.ID}}, d, options.Replace().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("mongodb: park: %w", err)
	}
	return nil
}

// Commit implements [readmodel.Tx]: it inserts one link document per
// advance (see linkDoc; a duplicate _id is a conflict), checks that the
// links it inserted are the partitions' heads, prunes older links and
// commits the transaction, if any.
//
// Without transactions a conflict may leave some partitions of the batch
// advanced and others not. That is safe: their writes are already applied
// and guarded, and the runner stops on the conflict.
func (t *Tx) Commit(ctx context.Context, advances []readmodel.Advance) error {
	if t.done {
		return errors.New("mongodb: transaction already ended")
	}
	t.done = true
	defer t.unlock()
	if t.sess != nil {
		defer t.sess.EndSession(ctx)
	}
	if err := t.advance(t.ctx(ctx), advances); err != nil {
		t.abort(ctx)
		return err
	}
	if err := t.resolve(t.ctx(ctx)); err != nil {
		t.abort(ctx)
		return err
	}
	if t.sess != nil {
		if err := t.sess.CommitTransaction(ctx); err != nil {
			return fmt.Errorf("mongodb: commit: %w", err)
		}
	}
	return nil
}

func (t *Tx) advance(ctx context.Context, advances []readmodel.Advance) error {
	if len(advances) == 0 {
		return nil
	}
	// The checkpoints must be where the commit expects them; the unique
	// _id of the links then settles a race between two commits that both
	// saw them there.
	before, err := t.s.checkpoints(ctx, t.projection)
	if err != nil {
		return err
	}
	for _, a := range advances {
		cur, ok := before[a.Partition]
		if (a.Prev < 0 && ok) || (a.Prev >= 0 && (!ok || int64(cur) != a.Prev)) {
			return &readmodel.ConflictError{Projection: t.projection, Partition: a.Partition, Expected: a.Prev}
		}
	}
	docs := make([]any, len(advances))
	var prune bson.A
	for i, a := range advances {
		docs[i] = linkDoc{ID: linkID(t.projection, a.Partition, a.Prev), Projection: t.projection,
			Partition: int32(a.Partition), Prev: a.Prev, Next: int64(a.Next)}
		if a.Prev >= 0 {
			prune = append(prune, bson.D{{Key: "partition", Value: int32(a.Partition)}, {Key: "next", Value: bson.D{{Key: "$lt", Value: a.Prev}}}})
		}
	}
	_, err = t.s.cps.InsertMany(ctx, docs)
	if mongo.IsDuplicateKeyError(err) {
		return &readmodel.ConflictError{Projection: t.projection, Partition: advances[0].Partition, Expected: advances[0].Prev,
			Detail: "another commit advanced from the same checkpoint"}
	}
	if err != nil {
		return fmt.Errorf("mongodb: checkpoint: %w", err)
	}
	// A runner so far behind that its previous link was pruned could
	// insert its link again: the heads tell.
	heads, err := t.s.checkpoints(ctx, t.projection)
	if err != nil {
		return err
	}
	for _, a := range advances {
		if heads[a.Partition] != a.Next {
			return &readmodel.ConflictError{Projection: t.projection, Partition: a.Partition, Expected: a.Prev,
				Detail: fmt.Sprintf("the partition is at %d", heads[a.Partition])}
		}
	}
	if len(prune) > 0 {
		// Housekeeping: a failure leaves links for the next commit to
		// prune.
		t.s.cps.DeleteMany(ctx, bson.D{{Key: "projection", Value: t.projection}, {Key: "$or", Value: prune}})
	}
	return nil
}

func (t *Tx) abort(ctx context.Context) {
	if t.sess != nil {
		t.sess.AbortTransaction(ctx)
	}
}

// Rollback implements [readmodel.Tx]. Without transactions the writes
// already made stay; their positions make a replay skip them.
func (t *Tx) Rollback(ctx context.Context) error {
	if t.done {
		return nil
	}
	t.done = true
	defer t.unlock()
	if t.sess != nil {
		err := t.sess.AbortTransaction(ctx)
		t.sess.EndSession(ctx)
		if err != nil {
			return fmt.Errorf("mongodb: abort: %w", err)
		}
	}
	return nil
}
