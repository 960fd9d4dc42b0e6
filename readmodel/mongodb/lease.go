package mongodb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/esmill/esmill/lease"
)

// LeaseStore keeps the membership and partition leases of lease groups
// (the instances of a projection sharing its partitions, see
// readmodel.Config.Leases) in the store's database, in the collections
// <prefix>lease_members and <prefix>lease_owners. It needs no
// transactions: every grant is one conditional single-document update
// (findOneAndUpdate whose filter says "expired, or mine"), or the insert
// of a partition's first lease, which the _id's unique index decides.
//
// Expiry runs on the instances' clocks (a plain update cannot compare with
// the server's clock, and FerretDB has no update pipelines): keep the
// machines' clocks in sync. A skew eats into the margin an instance keeps
// before its lease ends (lease.Config.StopMargin, a fifth of the TTL);
// the checkpoint compare-and-set fences what it does not cover. On
// FerretDB 1.x, whose filtered updates are not atomic under concurrency
// (see the package documentation), two instances taking over one expired
// lease at the same instant could both be granted it; the checkpoint
// compare-and-set, which rests on a unique _id, still lets only one of
// them commit each batch, and the next renewal leaves one holder. It
// implements [lease.Store] (tested: TestMongoDBLeaseContract, on
// FerretDB).
type LeaseStore struct {
	members, owners *mongo.Collection
	now             func() time.Time
}

// Leases returns the store's [lease.Store].
func (s *Store) Leases() *LeaseStore {
	return &LeaseStore{
		members: s.db.Collection(s.prefix + "lease_members"),
		owners:  s.db.Collection(s.prefix + "lease_owners"),
		now:     time.Now,
	}
}

type memberDoc struct {
	ID         string `bson:"_id"`
	Group      string `bson:"group"`
	Instance   string `bson:"instance"`
	Partitions int    `bson:"partitions"`
	Expires    int64  `bson:"expires"`
}

type ownerDoc struct {
	ID        string `bson:"_id"`
	Group     string `bson:"group"`
	Partition int    `bson:"partition"`
	Instance  string `bson:"instance"`
	Expires   int64  `bson:"expires"`
	Token     int64  `bson:"token"`
}

// Heartbeat implements [lease.Store].
func (l *LeaseStore) Heartbeat(ctx context.Context, req lease.HeartbeatRequest) (lease.Membership, error) {
	if err := req.Validate(); err != nil {
		return lease.Membership{}, err
	}
	fail := func(err error) (lease.Membership, error) {
		return lease.Membership{}, fmt.Errorf("mongodb: lease heartbeat of %s in group %s: %w", req.Instance, req.Group, err)
	}
	now := l.now().UnixMilli()
	if _, err := l.members.DeleteMany(ctx, bson.D{{Key: "group", Value: req.Group}, {Key: "expires", Value: bson.D{{Key: "$lte", Value: now}}}}); err != nil {
		return fail(err)
	}
	var other memberDoc
	err := l.members.FindOne(ctx, bson.D{{Key: "group", Value: req.Group}, {Key: "instance", Value: bson.D{{Key: "$ne", Value: req.Instance}}},
		{Key: "partitions", Value: bson.D{{Key: "$ne", Value: req.Partitions}}}}).Decode(&other)
	if err == nil {
		return lease.Membership{}, &lease.PartitionCountError{Group: req.Group, Have: other.Partitions, Want: req.Partitions}
	}
	if !errors.Is(err, mongo.ErrNoDocuments) {
		return fail(err)
	}
	_, err = l.members.UpdateOne(ctx, bson.D{{Key: "_id", Value: req.Group + "\n" + req.Instance}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "group", Value: req.Group}, {Key: "instance", Value: req.Instance},
			{Key: "partitions", Value: req.Partitions}, {Key: "expires", Value: now + req.TTL.Milliseconds()}}}},
		options.UpdateOne().SetUpsert(true))
	if err != nil {
		return fail(err)
	}
	cur, err := l.members.Find(ctx, bson.D{{Key: "group", Value: req.Group}, {Key: "expires", Value: bson.D{{Key: "$gt", Value: now}}}})
	if err != nil {
		return fail(err)
	}
	var docs []memberDoc
	if err := cur.All(ctx, &docs); err != nil {
		return fail(err)
	}
	ms := lease.Membership{Partitions: req.Partitions}
	for _, d := range docs {
		ms.Members = append(ms.Members, d.Instance)
	}
	slices.Sort(ms.Members)
	return ms, nil
}

// Acquire implements [lease.Store]. Per partition: renew the instance's
// own live lease (token kept); else take over an expired or released one
// (token incremented); else insert the partition's first lease.
func (l *LeaseStore) Acquire(ctx context.Context, req lease.AcquireRequest) ([]lease.Grant, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var grants []lease.Grant
	for _, p := range req.Partitions {
		if slices.ContainsFunc(grants, func(g lease.Grant) bool { return g.Partition == p }) {
			continue
		}
		tok, ok, err := l.acquire(ctx, req, p)
		if err != nil {
			return nil, fmt.Errorf("mongodb: lease acquire for %s in group %s: %w", req.Instance, req.Group, err)
		}
		if ok {
			grants = append(grants, lease.Grant{Partition: p, Token: tok})
		}
	}
	return grants, nil
}

func (l *LeaseStore) acquire(ctx context.Context, req lease.AcquireRequest, p int) (uint64, bool, error) {
	now := l.now().UnixMilli()
	id := req.Group + "\n" + strconv.Itoa(p)
	expires := now + req.TTL.Milliseconds()
	after := options.FindOneAndUpdate().SetReturnDocument(options.After)
	var doc ownerDoc
	err := l.owners.FindOneAndUpdate(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "instance", Value: req.Instance}, {Key: "expires", Value: bson.D{{Key: "$gt", Value: now}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "expires", Value: expires}}}}, after).Decode(&doc)
	if err == nil {
		return uint64(doc.Token), true, nil
	}
	if !errors.Is(err, mongo.ErrNoDocuments) {
		return 0, false, err
	}
	err = l.owners.FindOneAndUpdate(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "expires", Value: bson.D{{Key: "$lte", Value: now}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "instance", Value: req.Instance}, {Key: "expires", Value: expires}}},
			{Key: "$inc", Value: bson.D{{Key: "token", Value: int64(1)}}}}, after).Decode(&doc)
	if err == nil {
		return uint64(doc.Token), true, nil
	}
	if !errors.Is(err, mongo.ErrNoDocuments) {
		return 0, false, err
	}
	_, err = l.owners.InsertOne(ctx, ownerDoc{ID: id, Group: req.Group, Partition: p, Instance: req.Instance, Expires: expires, Token: 1})
	if err == nil {
		return 1, true, nil
	}
	if mongo.IsDuplicateKeyError(err) {
		return 0, false, nil // held by another instance
	}
	return 0, false, err
}

// Release implements [lease.Store]: the leases expire at once; their
// documents stay, so that the token only grows.
func (l *LeaseStore) Release(ctx context.Context, group, instance string, partitions []int) error {
	if len(partitions) == 0 {
		return nil
	}
	ids := make([]string, 0, len(partitions))
	for _, p := range partitions {
		ids = append(ids, group+"\n"+strconv.Itoa(p))
	}
	_, err := l.owners.UpdateMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}, {Key: "instance", Value: instance}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "expires", Value: int64(0)}}}})
	if err != nil {
		return fmt.Errorf("mongodb: lease release for %s in group %s: %w", instance, group, err)
	}
	return nil
}

// Leave implements [lease.Store].
func (l *LeaseStore) Leave(ctx context.Context, group, instance string) error {
	if _, err := l.members.DeleteOne(ctx, bson.D{{Key: "_id", Value: group + "\n" + instance}}); err != nil {
		return fmt.Errorf("mongodb: lease leave of %s from group %s: %w", instance, group, err)
	}
	return nil
}
