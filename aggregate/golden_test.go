package aggregate_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/internal/golden"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

// Events written by esmill are stored exactly as kameo_es stores them.
func TestWritesKameoFormat(t *testing.T) {
	g := golden.Kameo(t)
	srv := embedded.RunT(t)
	accounts := aggregate.Bind(newExec(t, newClient(t, srv.Addr()), aggregate.Config{}), accountType())
	ctx := ctxT(t)
	if _, err := accounts.Execute(ctx, "alice", Open{Owner: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.Execute(ctx, "alice", Deposit{Amount: 100}); err != nil {
		t.Fatal(err)
	}
	cause := codec.Causation{EventID: uuid.MustParse("01a22828-aa2f-1837-be1f-60b713af75d4"), StreamID: "transfer-t1", StreamVersion: 7}
	if _, err := accounts.Execute(ctx, "alice", Withdraw{Amount: 10}, aggregate.CausedBy(cause)); err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.Execute(ctx, "alice", Close{}); err != nil {
		t.Fatal(err)
	}
	evs := srv.Stream("bank_account-alice")
	if len(evs) != 4 {
		t.Fatalf("%d events in bank_account-alice", len(evs))
	}
	for i, want := range []struct{ name, payload string }{
		{"Opened", "payload_opened"}, {"MoneyDeposited", "payload_deposited"}, {"MoneyWithdrawn", ""}, {"Closed", "payload_closed"},
	} {
		ev := evs[i]
		if ev.Name != want.name || ev.PartitionKey != sierradb.StreamPartitionKey("bank_account-alice") {
			t.Fatalf("event %d: %s under %s", i, ev.Name, ev.PartitionKey)
		}
		if want.payload != "" && !bytes.Equal(ev.Payload, g[want.payload]) {
			t.Fatalf("%s payload %x, kameo_es writes %x", ev.Name, ev.Payload, g[want.payload])
		}
		if ev.Metadata[0] != 0xbf || ev.Metadata[len(ev.Metadata)-1] != 0xff {
			t.Fatalf("metadata %x is not an indefinite-length map like serde's", ev.Metadata)
		}
	}
	// The caused event's metadata starts exactly as kameo_es's (ccmd,
	// ceid as 16 bytes, csid, csv); esmill's own command id follows.
	kameo := g["metadata_caused"]
	caused := evs[2].Metadata
	prefix := kameo[:len(kameo)-1] // without the break byte
	prefix = bytes.Replace(prefix, []byte("Deposit"), []byte("Withdraw"), 1)
	prefix[len("\xbf\x64ccmd")] = 0x68 // text(8) "Withdraw"
	if !bytes.HasPrefix(caused, prefix) {
		t.Fatalf("caused metadata\n%x\ndoes not start like kameo_es's\n%x", caused, prefix)
	}
	m, err := codec.DecodeMetadata(caused)
	if err != nil || m.Command != "Withdraw" || *m.Causation != cause || m.CommandID == "" {
		t.Fatalf("metadata %+v, %v", m, err)
	}
}

// Events written by kameo_es (bytes from serde/ciborium) load into esmill
// entities, with their causation tracking.
func TestReadsKameoEvents(t *testing.T) {
	g := golden.Kameo(t)
	srv := embedded.RunT(t)
	stream := "bank_account-bob"
	key := sierradb.StreamPartitionKey(stream)
	raw := []sierradb.NewEvent{
		{StreamID: stream, Name: "Opened", ExpectedVersion: sierradb.ExpectEmpty, Payload: g["payload_opened"], Metadata: g["metadata_command_only"]},
		{StreamID: stream, Name: "MoneyDeposited", ExpectedVersion: sierradb.ExpectVersion(0), Payload: g["payload_deposited"], Metadata: g["metadata_caused"]},
		{StreamID: stream, Name: "MoneyWithdrawn", ExpectedVersion: sierradb.ExpectVersion(1), Payload: g["payload_deposited"][:0:0], Metadata: g["metadata_caused_with_data"]},
	}
	raw[2].Payload, _ = codec.EncodePayload(codec.CBOR, "MoneyWithdrawn", Withdrawn{Amount: 30})
	if _, err := srv.AppendMulti(key, raw...); err != nil {
		t.Fatal(err)
	}
	accounts := aggregate.Bind(newExec(t, newClient(t, srv.Addr()), aggregate.Config{}), accountType())
	ctx := ctxT(t)
	s, v, err := accounts.Load(ctx, "bob")
	if err != nil || v != 2 || s.Owner != "alice" || s.Balance != 70 {
		t.Fatalf("loaded %+v v%d: %v", s, v, err)
	}
	// kameo_es recorded (transfer-t1@7, Deposit): the same cause is
	// idempotent for Deposit in esmill too.
	cause := codec.Causation{EventID: uuid.New(), StreamID: "transfer-t1", StreamVersion: 7}
	r, err := accounts.Execute(ctx, "bob", Deposit{Amount: 1}, aggregate.CausedBy(cause))
	if err != nil || !r.Idempotent {
		t.Fatalf("a cause kameo_es handled ran again: %+v %v", r, err)
	}
	// An event that does not decode is a typed error, not a panic.
	bad := "bank_account-carol"
	srv.AppendMulti(sierradb.StreamPartitionKey(bad), sierradb.NewEvent{StreamID: bad, Name: "MoneyDeposited", ExpectedVersion: sierradb.ExpectEmpty, Payload: []byte{0xff, 0x00}})
	_, _, err = accounts.Load(ctx, "carol")
	var de *aggregate.EventDecodeError
	if !errorsAs(err, &de) || de.Version != 0 {
		t.Fatalf("undecodable event: %v", err)
	}
	_ = time.Now
}
