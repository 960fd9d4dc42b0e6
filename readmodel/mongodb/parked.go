package mongodb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/esmill/esmill/readmodel"
)

func (d parkedDoc) event() readmodel.ParkedEvent {
	id, _ := uuid.Parse(d.EventID)
	return readmodel.ParkedEvent{
		Position: readmodel.Position{Partition: uint16(d.Partition), Sequence: uint64(d.Sequence)},
		EventID:  id, StreamID: d.StreamID, StreamVersion: uint64(d.StreamVersion), Name: d.Name,
		Payload: d.Payload, Metadata: d.Metadata, Cause: readmodel.Cause(d.Cause), Reason: d.Reason,
		Attempts: int(d.Attempts), ParkedAt: d.ParkedAt.UTC(),
	}
}

// resolvedDoc is a parked event that was replayed or skipped.
type resolvedDoc struct {
	Parked     parkedDoc `bson:",inline"`
	Action     string    `bson:"action"`
	By         string    `bson:"by"`
	Note       string    `bson:"note"`
	ResolvedAt time.Time `bson:"resolved_at"`
}

// unparked is an event Unpark took off the parked list.
type unparked struct {
	doc resolvedDoc
}

func parkedID(projection string, pos readmodel.Position) string {
	return fmt.Sprintf("%s/%d/%d", projection, pos.Partition, pos.Sequence)
}

// Resolved implements [readmodel.Store].
func (s *Store) Resolved(ctx context.Context, projection string) ([]readmodel.ResolvedEvent, error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return nil, err
	}
	cur, err := s.resolved.Find(ctx, bson.D{{Key: "projection", Value: projection}},
		options.Find().SetSort(bson.D{{Key: "partition", Value: 1}, {Key: "sequence", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("mongodb: resolved: %w", err)
	}
	var docs []resolvedDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("mongodb: resolved: %w", err)
	}
	out := make([]readmodel.ResolvedEvent, 0, len(docs))
	for _, d := range docs {
		out = append(out, readmodel.ResolvedEvent{ParkedEvent: d.Parked.event(), Resolution: readmodel.Resolution{
			Action: readmodel.Action(d.Action), By: d.By, Note: d.Note, At: d.ResolvedAt.UTC(),
		}})
	}
	return out, nil
}

// Unpark implements [readmodel.Tx]. Writes through Handle(pos) of an
// unparked position are guarded per replay (the field
// _esmill.<projection>.r<partition>_<sequence>), so that a replay that is
// repeated, after a crash or by a second process, applies each write once.
//
// With transactions the parked document is deleted and the resolution
// recorded in the transaction. Without, Unpark only reads it; Commit
// deletes it (the delete is the claim: of two commits only one deletes
// it, the other fails with ErrNotParked, its guarded writes having changed
// nothing) and then records the resolution. A crash between the two loses
// the record of the resolution, not the event's writes.
func (t *Tx) Unpark(ctx context.Context, pos readmodel.Position, res readmodel.Resolution) (readmodel.ParkedEvent, error) {
	if t.done {
		return readmodel.ParkedEvent{}, errors.New("mongodb: transaction already ended")
	}
	if t.isUnparked(pos) {
		return readmodel.ParkedEvent{}, &readmodel.NotParkedError{Projection: t.projection, Position: pos}
	}
	filter := bson.D{{Key: "_id", Value: parkedID(t.projection, pos)}}
	var d parkedDoc
	var err error
	if t.sess != nil {
		err = t.s.parked.FindOneAndDelete(t.ctx(ctx), filter).Decode(&d)
	} else {
		err = t.s.parked.FindOne(ctx, filter).Decode(&d)
	}
	if errors.Is(err, mongo.ErrNoDocuments) {
		return readmodel.ParkedEvent{}, &readmodel.NotParkedError{Projection: t.projection, Position: pos}
	}
	if err != nil {
		return readmodel.ParkedEvent{}, fmt.Errorf("mongodb: unpark: %w", err)
	}
	u := unparked{doc: resolvedDoc{Parked: d, Action: string(res.Action), By: res.By, Note: res.Note, ResolvedAt: res.At}}
	if t.sess != nil {
		if err := t.record(t.ctx(ctx), u); err != nil {
			return readmodel.ParkedEvent{}, err
		}
	}
	t.unparked = append(t.unparked, u)
	return d.event(), nil
}

func (t *Tx) isUnparked(pos readmodel.Position) bool {
	for _, u := range t.unparked {
		if uint16(u.doc.Parked.Partition) == pos.Partition && uint64(u.doc.Parked.Sequence) == pos.Sequence {
			return true
		}
	}
	return false
}

// record stores the resolution of an unparked event.
func (t *Tx) record(ctx context.Context, u unparked) error {
	_, err := t.s.resolved.ReplaceOne(ctx, bson.D{{Key: "_id", Value: u.doc.Parked.ID}}, u.doc, options.Replace().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("mongodb: record resolution: %w", err)
	}
	return nil
}

// resolve, at Commit without transactions, deletes the unparked events'
// documents and records their resolutions.
func (t *Tx) resolve(ctx context.Context) error {
	if t.sess != nil {
		return nil
	}
	for _, u := range t.unparked {
		res, err := t.s.parked.DeleteOne(ctx, bson.D{{Key: "_id", Value: u.doc.Parked.ID}})
		if err != nil {
			return fmt.Errorf("mongodb: unpark: %w", err)
		}
		if res.DeletedCount == 0 {
			return &readmodel.NotParkedError{Projection: t.projection,
				Position: readmodel.Position{Partition: uint16(u.doc.Parked.Partition), Sequence: uint64(u.doc.Parked.Sequence)}}
		}
		if err := t.record(ctx, u); err != nil {
			return err
		}
	}
	return nil
}

type parkedDoc struct {
	ID            string    `bson:"_id"`
	Projection    string    `bson:"projection"`
	Partition     int32     `bson:"partition"`
	Sequence      int64     `bson:"sequence"`
	EventID       string    `bson:"event_id"`
	StreamID      string    `bson:"stream_id"`
	StreamVersion int64     `bson:"stream_version"`
	Name          string    `bson:"name"`
	Payload       []byte    `bson:"payload,omitempty"`
	Metadata      []byte    `bson:"metadata,omitempty"`
	Cause         string    `bson:"cause"`
	Reason        string    `bson:"reason"`
	Attempts      int32     `bson:"attempts"`
	ParkedAt      time.Time `bson:"parked_at"`
}

// Parked implements [readmodel.Store].
func (s *Store) Parked(ctx context.Context, projection string) ([]readmodel.ParkedEvent, error) {
	if err := readmodel.ValidateName(projection); err != nil {
		return nil, err
	}
	cur, err := s.parked.Find(ctx, bson.D{{Key: "projection", Value: projection}},
		options.Find().SetSort(bson.D{{Key: "partition", Value: 1}, {Key: "sequence", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("mongodb: parked: %w", err)
	}
	var docs []parkedDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("mongodb: parked: %w", err)
	}
	out := make([]readmodel.ParkedEvent, 0, len(docs))
	for _, d := range docs {
		id, _ := uuid.Parse(d.EventID)
		out = append(out, readmodel.ParkedEvent{
			Position: readmodel.Position{Partition: uint16(d.Partition), Sequence: uint64(d.Sequence)},
			EventID:  id, StreamID: d.StreamID, StreamVersion: uint64(d.StreamVersion), Name: d.Name,
			Payload: d.Payload, Metadata: d.Metadata, Cause: readmodel.Cause(d.Cause), Reason: d.Reason,
			Attempts: int(d.Attempts), ParkedAt: d.ParkedAt.UTC(),
		})
	}
	return out, nil
}
