package mongodb

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/esmill/esmill/readmodel"
)

// ErrNeedsID is returned for an upsert, replacement or insert that does not
// name its document by _id: without it, replaying the event could create a
// second document (see the package documentation).
var ErrNeedsID = errors.New("mongodb: the write must name its document by _id")

// Handle is what handlers write the read model through: it is bound to the
// event being applied, and guards and positions every write (see the
// package documentation). Within a transaction its operations run in it.
type Handle struct {
	s          *Store
	tx         *Tx // nil for the handle of Reset
	projection string
	pos        readmodel.Position
	bound      bool
	// replay: the event is a parked one being replayed (or a held one
	// being released), whose partition has moved past it; its writes
	// are guarded by a field of their own (see key).
	replay bool
}

// Projection returns the projection's name.
func (h *Handle) Projection() string { return h.projection }

// Position returns the position of the event being applied.
func (h *Handle) Position() readmodel.Position { return h.pos }

// Database returns the database, for reads and for what the guarded
// operations do not cover (such as dropping collections in a Reset). Writes
// made through it directly are not guarded.
func (h *Handle) Database() *mongo.Database { return h.s.db }

// Collection returns the guarded view of a collection.
func (h *Handle) Collection(name string) *Collection {
	return &Collection{h: h, c: h.s.db.Collection(name)}
}

func (h *Handle) ctx(ctx context.Context) context.Context {
	if h.tx == nil {
		return ctx
	}
	return h.tx.ctx(ctx)
}

// Collection is a collection seen through a [Handle]: its writes are
// guarded and positioned, its reads run in the batch's transaction (if
// any).
type Collection struct {
	h *Handle
	c *mongo.Collection
}

// Raw returns the driver's collection. Writes made through it are not
// guarded.
func (c *Collection) Raw() *mongo.Collection { return c.c }

func (c *Collection) field() string { return "_esmill." + c.h.projection + "." + c.key() }

// key is the last part of the guard field: "p<partition>", the
// partition's position, for an event applied in order; "r<partition>_<sequence>"
// for a replayed one, which the partition's position cannot guard (a
// document written by a later event of the partition would skip it), so
// it records that the document has applied this replay.
func (c *Collection) key() string {
	if c.h.replay {
		return fmt.Sprintf("r%d_%d", c.h.pos.Partition, c.h.pos.Sequence)
	}
	return "p" + fmt.Sprint(c.h.pos.Partition)
}

func (c *Collection) seq() int64 { return int64(c.h.pos.Sequence) }

func (c *Collection) check() error {
	if !c.h.bound {
		return errors.New("mongodb: guarded writes need the handle of an event (this is Reset's handle)")
	}
	return nil
}

// toD converts a filter, update or document to a bson.D.
func toD(v any) (bson.D, error) {
	if v == nil {
		return bson.D{}, nil
	}
	if d, ok := v.(bson.D); ok {
		return d, nil
	}
	b, err := bson.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("mongodb: %w", err)
	}
	var d bson.D
	if err := bson.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("mongodb: %w", err)
	}
	return d, nil
}

func lookup(d bson.D, key string) (any, int) {
	for i, e := range d {
		if e.Key == key {
			return e.Value, i
		}
	}
	return nil, -1
}

// guard adds to filter the condition that the document has not applied
// the handle's position: its position field is absent or lower.
func (c *Collection) guard(filter any) (bson.D, error) {
	f, err := toD(filter)
	if err != nil {
		return nil, err
	}
	cond := bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: c.field(), Value: bson.D{{Key: "$exists", Value: false}}}},
		bson.D{{Key: c.field(), Value: bson.D{{Key: "$lt", Value: c.seq()}}}},
	}}}
	out := make(bson.D, 0, len(f)+1)
	out = append(out, f...)
	if v, i := lookup(out, "$and"); i >= 0 {
		a, ok := v.(bson.A)
		if !ok {
			return nil, errors.New("mongodb: $and must be an array")
		}
		out[i].Value = append(append(bson.A{}, a...), cond)
	} else {
		out = append(out, bson.E{Key: "$and", Value: bson.A{cond}})
	}
	return out, nil
}

// positioned adds "$set: {<position field>: seq}" to an update with
// operators.
func (c *Collection) positioned(update any) (bson.D, error) {
	u, err := toD(update)
	if err != nil {
		return nil, err
	}
	if len(u) == 0 {
		return nil, errors.New("mongodb: empty update")
	}
	out := make(bson.D, 0, len(u)+1)
	for _, e := range u {
		if !strings.HasPrefix(e.Key, "$") {
			return nil, fmt.Errorf("mongodb: update key %q is not an operator: use ReplaceOne for replacements", e.Key)
		}
		out = append(out, e)
	}
	if v, i := lookup(out, "$set"); i >= 0 {
		set, err := toD(v)
		if err != nil {
			return nil, err
		}
		for _, e := range set {
			if e.Key == "_esmill" || strings.HasPrefix(e.Key, "_esmill.") {
				return nil, errors.New("mongodb: the update must not set _esmill")
			}
		}
		out[i].Value = append(append(bson.D{}, set...), bson.E{Key: c.field(), Value: c.seq()})
	} else {
		out = append(out, bson.E{Key: "$set", Value: bson.D{{Key: c.field(), Value: c.seq()}}})
	}
	return out, nil
}

func hasID(d bson.D) bool {
	_, i := lookup(d, "_id")
	return i >= 0
}

// UpdateOne applies update (with operators such as $set and $inc) to the
// first document matching filter that has not applied this event. It
// reports whether a document was changed.
func (c *Collection) UpdateOne(ctx context.Context, filter, update any) (bool, error) {
	return c.update(ctx, filter, update, false)
}

// Upsert is UpdateOne that creates the document when none matches. The
// filter must name the document by _id ([ErrNeedsID]); an upsert that
// runs into the _id of a document that has already applied this event
// changes nothing and reports false.
func (c *Collection) Upsert(ctx context.Context, filter, update any) (bool, error) {
	return c.update(ctx, filter, update, true)
}

func (c *Collection) update(ctx context.Context, filter, update any, upsert bool) (bool, error) {
	if err := c.check(); err != nil {
		return false, err
	}
	f, err := c.guard(filter)
	if err != nil {
		return false, err
	}
	if upsert && !hasID(f) {
		return false, ErrNeedsID
	}
	u, err := c.positioned(update)
	if err != nil {
		return false, err
	}
	res, err := c.c.UpdateOne(c.h.ctx(ctx), f, u, options.UpdateOne().SetUpsert(upsert))
	if upsert && mongo.IsDuplicateKeyError(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return res.ModifiedCount+res.UpsertedCount > 0, nil
}

// UpdateMany applies update to every document matching filter that has
// not applied this event, and returns how many it changed.
func (c *Collection) UpdateMany(ctx context.Context, filter, update any) (int64, error) {
	if err := c.check(); err != nil {
		return 0, err
	}
	f, err := c.guard(filter)
	if err != nil {
		return 0, err
	}
	u, err := c.positioned(update)
	if err != nil {
		return 0, err
	}
	res, err := c.c.UpdateMany(c.h.ctx(ctx), f, u)
	if err != nil {
		return 0, err
	}
	return res.ModifiedCount, nil
}

// ReplaceOne replaces the document named by filter (which must name it by
// _id) with replacement, keeping the document's positions of other
// partitions and projections; with upsert it creates it when absent. It
// reports whether it wrote.
func (c *Collection) ReplaceOne(ctx context.Context, filter, replacement any, upsert bool) (bool, error) {
	if err := c.check(); err != nil {
		return false, err
	}
	f, err := toD(filter)
	if err != nil {
		return false, err
	}
	if !hasID(f) {
		return false, ErrNeedsID
	}
	r, err := toD(replacement)
	if err != nil {
		return false, err
	}
	// Keep the positions the document holds.
	var cur struct {
		Pos bson.D `bson:"_esmill"`
	}
	err = c.c.FindOne(c.h.ctx(ctx), f, options.FindOne().SetProjection(bson.D{{Key: "_esmill", Value: 1}})).Decode(&cur)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return false, err
	}
	pos := setPath(cur.Pos, []string{c.h.projection, c.key()}, c.seq())
	doc := make(bson.D, 0, len(r)+1)
	for _, e := range r {
		if e.Key != "_esmill" {
			doc = append(doc, e)
		}
	}
	doc = append(doc, bson.E{Key: "_esmill", Value: pos})
	g, err := c.guard(f)
	if err != nil {
		return false, err
	}
	res, err := c.c.ReplaceOne(c.h.ctx(ctx), g, doc, options.Replace().SetUpsert(upsert))
	if upsert && mongo.IsDuplicateKeyError(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return res.ModifiedCount+res.UpsertedCount > 0, nil
}

// setPath sets d[path...] = v in nested bson.D values, copying what it
// changes.
func setPath(d bson.D, path []string, v any) bson.D {
	out := make(bson.D, 0, len(d)+1)
	found := false
	for _, e := range d {
		if e.Key == path[0] {
			found = true
			if len(path) == 1 {
				e.Value = v
			} else {
				sub, _ := e.Value.(bson.D)
				e.Value = setPath(sub, path[1:], v)
			}
		}
		out = append(out, e)
	}
	if !found {
		if len(path) == 1 {
			out = append(out, bson.E{Key: path[0], Value: v})
		} else {
			out = append(out, bson.E{Key: path[0], Value: setPath(nil, path[1:], v)})
		}
	}
	return out
}

// InsertOne inserts doc, which must have an _id. If a document with that
// _id exists and has already applied this event, it changes nothing and
// reports false; any other duplicate is an error.
func (c *Collection) InsertOne(ctx context.Context, doc any) (bool, error) {
	if err := c.check(); err != nil {
		return false, err
	}
	d, err := toD(doc)
	if err != nil {
		return false, err
	}
	id, i := lookup(d, "_id")
	if i < 0 {
		return false, ErrNeedsID
	}
	d = append(append(bson.D{}, d...), bson.E{Key: "_esmill", Value: bson.D{{Key: c.h.projection, Value: bson.D{{Key: c.key(), Value: c.seq()}}}}})
	_, err = c.c.InsertOne(c.h.ctx(ctx), d)
	if mongo.IsDuplicateKeyError(err) {
		n, cerr := c.c.CountDocuments(c.h.ctx(ctx), bson.D{{Key: "_id", Value: id}, {Key: c.field(), Value: bson.D{{Key: "$gte", Value: c.seq()}}}})
		if cerr == nil && n > 0 {
			return false, nil
		}
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// DeleteOne deletes the first document matching filter that has not
// applied this event.
func (c *Collection) DeleteOne(ctx context.Context, filter any) (bool, error) {
	if err := c.check(); err != nil {
		return false, err
	}
	f, err := c.guard(filter)
	if err != nil {
		return false, err
	}
	res, err := c.c.DeleteOne(c.h.ctx(ctx), f)
	if err != nil {
		return false, err
	}
	return res.DeletedCount > 0, nil
}

// DeleteMany deletes every document matching filter that has not applied
// this event, and returns how many.
func (c *Collection) DeleteMany(ctx context.Context, filter any) (int64, error) {
	if err := c.check(); err != nil {
		return 0, err
	}
	f, err := c.guard(filter)
	if err != nil {
		return 0, err
	}
	res, err := c.c.DeleteMany(c.h.ctx(ctx), f)
	if err != nil {
		return 0, err
	}
	return res.DeletedCount, nil
}

// FindOne decodes the first document matching filter into out and reports
// whether there was one.
func (c *Collection) FindOne(ctx context.Context, filter, out any) (bool, error) {
	err := c.c.FindOne(c.h.ctx(ctx), filter).Decode(out)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	return err == nil, err
}

// Find decodes every document matching filter into out, a pointer to a
// slice.
func (c *Collection) Find(ctx context.Context, filter, out any) error {
	if reflect.TypeOf(out).Kind() != reflect.Pointer {
		return errors.New("mongodb: Find needs a pointer to a slice")
	}
	cur, err := c.c.Find(c.h.ctx(ctx), filter)
	if err != nil {
		return err
	}
	return cur.All(c.h.ctx(ctx), out)
}

// Drop drops the collection (for Reset's drop function). It is not
// guarded, and not part of a transaction.
func (c *Collection) Drop(ctx context.Context) error { return c.c.Drop(ctx) }
