package readmodel_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/esmill/esmill/lease"
	"github.com/esmill/esmill/lease/leasetest"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/checkpointtest"
	"github.com/esmill/esmill/readmodel/mongodb"
	"github.com/esmill/esmill/test/internal/ferret"
)

func mongoClient(t testing.TB, uri string) *mongo.Client {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(context.Background()) })
	return c
}

func randomName(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// newMongoStore returns a store in a database of its own on FerretDB.
func newMongoStore(t testing.TB, db string) *mongodb.Store {
	t.Helper()
	c := mongoClient(t, ferret.Require(t))
	s, err := mongodb.New(context.Background(), c.Database(db), mongodb.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Transactions() {
		t.Fatal("FerretDB reported transactions")
	}
	return s
}

// The read model of the contract suite: one collection per projection,
// documents {_id: key, v: value}.
func mongoHarness() checkpointtest.Harness[*mongodb.Handle] {
	dbs := map[readmodel.Store[*mongodb.Handle]]string{}
	return checkpointtest.Harness[*mongodb.Handle]{
		New: func(t testing.TB) readmodel.Store[*mongodb.Handle] {
			db := randomName("t_")
			s := newMongoStore(t, db)
			dbs[s] = db
			return s
		},
		Reopen: func(t testing.TB, old readmodel.Store[*mongodb.Handle]) readmodel.Store[*mongodb.Handle] {
			s := newMongoStore(t, dbs[old])
			dbs[s] = dbs[old]
			return s
		},
		Add: func(ctx context.Context, h *mongodb.Handle, projection, key string, delta int64) error {
			_, err := h.Collection("rm_"+projection).Upsert(ctx, bson.D{{Key: "_id", Value: key}},
				bson.D{{Key: "$inc", Value: bson.D{{Key: "v", Value: delta}}}})
			return err
		},
		Get: func(ctx context.Context, st readmodel.Store[*mongodb.Handle], projection, key string) (int64, bool, error) {
			var doc struct {
				V int64 `bson:"v"`
			}
			err := st.(*mongodb.Store).Database().Collection("rm_"+projection).FindOne(ctx, bson.D{{Key: "_id", Value: key}}).Decode(&doc)
			if errors.Is(err, mongo.ErrNoDocuments) {
				return 0, false, nil
			}
			return doc.V, err == nil, err
		},
		Drop: func(ctx context.Context, h *mongodb.Handle, projection string) error {
			return h.Collection("rm_" + projection).Drop(ctx)
		},
		NonAtomic: true,
	}
}

func TestMongoDBContract(t *testing.T) {
	checkpointtest.Run(t, mongoHarness())
}

// TestMongoDBLeaseContract runs the lease contract against the MongoDB
// store's leases, on FerretDB (no transactions).
func TestMongoDBLeaseContract(t *testing.T) {
	s := newMongoStore(t, randomName("lease_")).Leases()
	leasetest.Run(t, func(*testing.T) lease.Store { return s }, 500*time.Millisecond)
}
