package aggregate_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/fxamacker/cbor/v2"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

// PurseOpenedV1 is the first shape of "PurseOpened", as old streams hold it.
type PurseOpenedV1 struct {
	Owner string `cbor:"owner"`
}

func (PurseOpenedV1) EventName() string { return "PurseOpened" }

// PurseOpened is the current shape, version 2: the owner became a holder,
// and a currency was added.
type PurseOpened struct {
	Holder   string `cbor:"holder"`
	Currency string `cbor:"currency"`
}

func (PurseOpened) EventName() string { return "PurseOpened" }
func (PurseOpened) EventVersion() int { return 2 }

// PurseFrozen has no fields: stored as {"PurseFrozen": {}}, serde's
// field-less struct variant. It was called "PurseLocked" once.
type PurseFrozen struct{}

func (PurseFrozen) EventName() string { return "PurseFrozen" }

// PurseClosed is a unit variant: stored as the bare name "PurseClosed".
type PurseClosed struct{ codec.Unit }

func (PurseClosed) EventName() string { return "PurseClosed" }

type Purse struct {
	Holder, Currency string
	Frozen, Closed   bool
}

type (
	FreezePurse struct{}
	ClosePurse  struct{}
)

func (FreezePurse) CommandName() string { return "FreezePurse" }
func (ClosePurse) CommandName() string  { return "ClosePurse" }

var Purses = aggregate.MustDefine[Purse, string]("purse",
	aggregate.On(func(p *Purse, e PurseOpened) { p.Holder, p.Currency = e.Holder, e.Currency }),
	aggregate.On(func(p *Purse, e PurseFrozen) { p.Frozen = true }),
	aggregate.On(func(p *Purse, e PurseClosed) { p.Closed = true }),
	// Version 1 had no currency: every purse then was in euros.
	aggregate.Upcast[Purse](func(o PurseOpenedV1) (PurseOpened, error) {
		return PurseOpened{Holder: o.Owner, Currency: "EUR"}, nil
	}),
	aggregate.Rename[Purse](
		aggregate.EventSchema{Name: "PurseLocked", Version: 1},
		aggregate.EventSchema{Name: "PurseFrozen", Version: 1}),
	aggregate.Handle(func(_ Purse, _ FreezePurse, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		return aggregate.Events(PurseFrozen{}), nil
	}),
	aggregate.Handle(func(_ Purse, _ ClosePurse, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
		return aggregate.Events(PurseClosed{}), nil
	}),
)

// Events stored in old shapes, under old names, load in their current
// shape; an event written by newer code is refused with a typed error.
func ExampleUpcast() {
	srv, err := embedded.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	exec, err := aggregate.NewExecutor(client, aggregate.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer exec.Close()
	ctx := context.Background()

	// The stream as an older version of the code wrote it: PurseOpened
	// version 1, and the event since renamed.
	opened, _ := codec.EncodePayload(codec.CBOR, "PurseOpened", PurseOpenedV1{Owner: "alice"})
	locked, _ := codec.EncodePayload(codec.CBOR, "PurseLocked", struct{}{})
	for i, ev := range []sierradb.NewEvent{
		{StreamID: "purse-p1", Name: "PurseOpened", Payload: opened},
		{StreamID: "purse-p1", Name: "PurseLocked", Payload: locked},
	} {
		ev.ExpectedVersion = sierradb.ExpectAfter(int64(i) - 1)
		if _, err := client.Append(ctx, ev); err != nil {
			log.Fatal(err)
		}
	}
	purses := aggregate.Bind(exec, Purses)
	p, version, err := purses.Load(ctx, "p1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v at version %d\n", p, version)

	// Version 3 of PurseOpened, from code not deployed here.
	meta, _ := codec.EncodeMetadata(codec.Metadata{EventVersion: 3})
	_, err = client.Append(ctx, sierradb.NewEvent{StreamID: "purse-p2", Name: "PurseOpened", Payload: opened, Metadata: meta, ExpectedVersion: sierradb.ExpectEmpty})
	if err != nil {
		log.Fatal(err)
	}
	_, _, err = purses.Load(ctx, "p2")
	fmt.Println(errors.Is(err, aggregate.ErrEventTooNew))
	fmt.Println(err)
	// Output:
	// {Holder:alice Currency:EUR Frozen:true Closed:false} at version 1
	// true
	// aggregate: event purse-p2@0 ("PurseOpened", schema version 3) does not decode: event "PurseOpened" has schema version 3 but this code reads versions up to 2: it was written by a newer version of the code; deploy it
}

// An event type without fields is stored as serde's field-less struct
// variant, which kameo_es reads; one that embeds codec.Unit as a unit
// variant, the bare name.
func Example_fieldlessEvents() {
	srv, err := embedded.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	client, err := sierradb.New(sierradb.Config{Addr: srv.Addr()})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	exec, err := aggregate.NewExecutor(client, aggregate.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer exec.Close()
	ctx := context.Background()

	purses := aggregate.Bind(exec, Purses)
	for _, c := range []aggregate.Command{FreezePurse{}, ClosePurse{}} {
		if _, err := purses.Execute(ctx, "p3", c); err != nil {
			log.Fatal(err)
		}
	}
	for _, ev := range srv.Stream("purse-p3") {
		diag, _ := cbor.Diagnose(ev.Payload)
		fmt.Println(ev.Name, diag)
	}
	// Output:
	// PurseFrozen {"PurseFrozen": {}}
	// PurseClosed "PurseClosed"
}
