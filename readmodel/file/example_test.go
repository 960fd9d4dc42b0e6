package file_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/file"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
)

type Visited struct {
	Page string `cbor:"page"`
}

func (Visited) EventName() string { return "Visited" }

var Visitors = aggregate.MustDefine[struct{}, string]("visitor", aggregate.On(func(*struct{}, Visited) {}))

// PageViews is the read model: views per page. It is saved, with the
// checkpoints, in one JSON file replaced atomically at every commit.
type PageViews struct {
	Views map[string]int `json:"views"`
}

func Example() {
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
	ctx := context.Background()
	for i, page := range []string{"/", "/about", "/"} {
		name, payload, _ := Visitors.EncodeEvent(Visited{Page: page})
		if _, err := client.Append(ctx, sierradb.NewEvent{StreamID: "visitor-v1", Name: name, Payload: payload,
			ExpectedVersion: sierradb.ExpectAfter(int64(i) - 1)}); err != nil {
			log.Fatal(err)
		}
	}

	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := file.Open(file.Config[PageViews]{Dir: dir, Format: codec.JSON,
		New: func() PageViews { return PageViews{Views: map[string]int{}} }})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	type tx = *file.Tx[PageViews]
	r, err := readmodel.New(readmodel.Config[tx]{
		Name: "pageviews", Client: client, Store: store,
		Handlers: []readmodel.Handler[tx]{
			readmodel.On(Visitors, func(ctx context.Context, tx tx, id string, e Visited, m readmodel.Meta) error {
				tx.Model().Views[e.Page]++
				return nil
			}),
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Start(); err != nil {
		log.Fatal(err)
	}
	if err := r.Sync(ctx); err != nil {
		log.Fatal(err)
	}
	r.Close()
	store.Read("pageviews", func(m PageViews) { fmt.Println(m.Views["/"], m.Views["/about"]) })
	fmt.Println(store.Path("pageviews")[len(dir):])
	// Output:
	// 2 1
	// /pageviews.json
}
