// Package ledger is a test domain whose events went through schema changes,
// shared by the versioning tests of aggregate, readmodel and
// sierradb/pubsub: an entity type with upcasters (a chain, a rename, an
// untyped one), field-less and unit-variant events, and the stored bytes of
// its old shapes as kameo_es (serde/ciborium) and older esmill wrote them,
// from codec/testdata/kameo_golden.json.
package ledger

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/codec"
)

// Ledger is the state.
type Ledger struct {
	Holder    string
	Currency  string
	Overdraft int64
	Balance   int64
	Reasons   []string
	Frozen    bool
	Closed    bool
}

// Opened is the current shape of "Opened", version 3: version 1 had only
// an owner, version 2 added the currency, version 3 renamed owner to holder
// and added an overdraft limit.
type Opened struct {
	Holder    string `cbor:"holder" json:"holder"`
	Currency  string `cbor:"currency" json:"currency"`
	Overdraft int64  `cbor:"overdraft" json:"overdraft"`
}

func (Opened) EventName() string { return "Opened" }
func (Opened) EventVersion() int { return 3 }

// OpenedV1 is "Opened" as kameo_es's bank example stores it.
type OpenedV1 struct {
	Owner string `cbor:"owner" json:"owner"`
}

func (OpenedV1) EventName() string { return "Opened" }

// OpenedV2 is "Opened" version 2.
type OpenedV2 struct {
	Owner    string `cbor:"owner" json:"owner"`
	Currency string `cbor:"currency" json:"currency"`
}

func (OpenedV2) EventName() string { return "Opened" }
func (OpenedV2) EventVersion() int { return 2 }

// Deposited was stored as "MoneyAdded" before it was renamed.
type Deposited struct {
	Amount uint32 `cbor:"amount" json:"amount"`
}

func (Deposited) EventName() string { return "MoneyDeposited" }

// Withdrawn is version 2 of "MoneyWithdrawn": version 1 (kameo_es's) had a
// 32-bit amount and no reason; UpcastFields adds the reason.
type Withdrawn struct {
	Amount uint64 `cbor:"amount" json:"amount"`
	Reason string `cbor:"reason" json:"reason"`
}

func (Withdrawn) EventName() string { return "MoneyWithdrawn" }
func (Withdrawn) EventVersion() int { return 2 }

// Frozen has no fields: a field-less struct variant, {"Frozen": {}}.
type Frozen struct{}

func (Frozen) EventName() string { return "Frozen" }

// Closed is a unit variant, the bare name "Closed".
type Closed struct{ codec.Unit }

func (Closed) EventName() string { return "Closed" }

// Commands.
type (
	Open struct {
		Holder, Currency string
		Overdraft        int64
	}
	Deposit  struct{ Amount uint32 }
	Withdraw struct {
		Amount uint64
		Reason string
	}
	Freeze struct{}
	Close  struct{}
)

func (Open) CommandName() string     { return "Open" }
func (Deposit) CommandName() string  { return "Deposit" }
func (Withdraw) CommandName() string { return "Withdraw" }
func (Freeze) CommandName() string   { return "Freeze" }
func (Close) CommandName() string    { return "Close" }

// ErrNoCurrency is the error of the Opened v2 → v3 upcaster for a stored
// event without a currency.
var ErrNoCurrency = errors.New("ledger: Opened v2 without a currency")

// ErrAlreadyOpen rejects Open on an open ledger.
var ErrAlreadyOpen = errors.New("ledger: already open")

// DefaultCurrency is what the v1 → v2 upcaster fills in.
const DefaultCurrency = "EUR"

// Upcasters are the type's upcasters: Opened v1 → v2 → v3 (typed),
// MoneyAdded → MoneyDeposited (a rename) and MoneyWithdrawn v1 → v2
// (untyped).
func Upcasters() []aggregate.Option[Ledger] {
	return []aggregate.Option[Ledger]{
		aggregate.Upcast[Ledger](func(o OpenedV1) (OpenedV2, error) {
			return OpenedV2{Owner: o.Owner, Currency: DefaultCurrency}, nil
		}),
		aggregate.Upcast[Ledger](func(o OpenedV2) (Opened, error) {
			if o.Currency == "" {
				return Opened{}, ErrNoCurrency
			}
			return Opened{Holder: o.Owner, Currency: o.Currency}, nil
		}),
		aggregate.Rename[Ledger](
			aggregate.EventSchema{Name: "MoneyAdded", Version: 1},
			aggregate.EventSchema{Name: "MoneyDeposited", Version: 1}),
		aggregate.UpcastFields[Ledger](
			aggregate.EventSchema{Name: "MoneyWithdrawn", Version: 1},
			aggregate.EventSchema{Name: "MoneyWithdrawn", Version: 2},
			func(f map[string]any) (map[string]any, error) {
				if _, ok := f["amount"]; !ok {
					return nil, errors.New("no amount")
				}
				f["reason"] = "unknown"
				return f, nil
			}),
	}
}

// Events registers the appliers of the current shapes.
func Events() []aggregate.Option[Ledger] {
	return []aggregate.Option[Ledger]{
		aggregate.On(func(l *Ledger, e Opened) { l.Holder, l.Currency, l.Overdraft = e.Holder, e.Currency, e.Overdraft }),
		aggregate.On(func(l *Ledger, e Deposited) { l.Balance += int64(e.Amount) }),
		aggregate.On(func(l *Ledger, e Withdrawn) {
			l.Balance -= int64(e.Amount)
			l.Reasons = append(l.Reasons, e.Reason)
		}),
		aggregate.On(func(l *Ledger, e Frozen) { l.Frozen = true }),
		aggregate.On(func(l *Ledger, e Closed) { l.Closed = true }),
	}
}

// Commands registers the command handlers.
func Commands() []aggregate.Option[Ledger] {
	return []aggregate.Option[Ledger]{
		aggregate.Handle(func(l Ledger, c Open, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
			if l.Holder != "" {
				return nil, ErrAlreadyOpen
			}
			return aggregate.Events(Opened{Holder: c.Holder, Currency: c.Currency, Overdraft: c.Overdraft}), nil
		}),
		aggregate.Handle(func(_ Ledger, c Deposit, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
			return aggregate.Events(Deposited(c)), nil
		}),
		aggregate.Handle(func(_ Ledger, c Withdraw, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
			return aggregate.Events(Withdrawn(c)), nil
		}),
		aggregate.Handle(func(_ Ledger, _ Freeze, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
			return aggregate.Events(Frozen{}), nil
		}),
		aggregate.Handle(func(_ Ledger, _ Close, _ *aggregate.CommandContext) ([]aggregate.Event, error) {
			return aggregate.Events(Closed{}), nil
		}),
	}
}

// Type defines the ledger ("ledger-<id>" streams) with every upcaster,
// applier and handler, then opts.
func Type(opts ...aggregate.Option[Ledger]) (*aggregate.Type[Ledger, string], error) {
	all := append(append(append(Upcasters(), Events()...), Commands()...), opts...)
	return aggregate.Define[Ledger, string]("ledger", all...)
}

// Stored is one stored event: name, payload and metadata bytes.
type Stored struct {
	Name              string
	Payload, Metadata []byte
}

// History is a stream as some past writer stored it, and the state it
// loads into.
type History struct {
	Name   string
	Events []Stored
	Want   Ledger
}

// Histories returns the stored histories, from the golden bytes: as
// kameo_es writes version 1 (with an event since renamed), as older esmill
// wrote a field-less event (the bare name), and as esmill with versioning
// writes versions 2 and 3.
func Histories(g map[string][]byte) []History {
	return []History{
		{
			Name: "kameo_es v1",
			Events: []Stored{
				{"Opened", g["payload_opened"], g["metadata_command_only"]},
				{"MoneyAdded", g["payload_money_added"], nil},
				{"MoneyWithdrawn", g["payload_withdrawn"], g["metadata_caused"]},
				{"Frozen", g["payload_frozen_unit"], nil}, // older esmill
			},
			Want: Ledger{Holder: "alice", Currency: DefaultCurrency, Balance: 250 - 4294967295, Reasons: []string{"unknown"}, Frozen: true},
		},
		{
			Name: "esmill v2",
			Events: []Stored{
				{"Opened", g["payload_opened_v2"], g["metadata_esmill_v2"]},
				{"MoneyDeposited", g["payload_deposited"], nil},
				{"Frozen", g["payload_frozen"], nil},
			},
			Want: Ledger{Holder: "alice", Currency: "USD", Balance: 100, Frozen: true},
		},
		{
			Name: "esmill v3",
			Events: []Stored{
				{"Opened", g["payload_opened_v3"], g["metadata_esmill_v3"]},
				{"Closed", g["payload_closed"], nil},
			},
			Want: Ledger{Holder: "alice", Currency: "USD", Overdraft: -500, Closed: true},
		},
	}
}

// Golden reads codec/testdata/kameo_golden.json.
func Golden() (map[string][]byte, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return nil, errors.New("ledger: cannot locate the source tree")
	}
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "codec", "testdata", "kameo_golden.json"))
	if err != nil {
		return nil, err
	}
	var hexes map[string]string
	if err := json.Unmarshal(raw, &hexes); err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(hexes))
	for k, h := range hexes {
		if out[k], err = hex.DecodeString(h); err != nil {
			return nil, fmt.Errorf("ledger: golden %s: %w", k, err)
		}
	}
	return out, nil
}
