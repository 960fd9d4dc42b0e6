package mongodb_test

import (
	"testing"

	"github.com/esmill/esmill/readmodel/mongodb"
)

// The store's contract suite and crash test run against FerretDB in the
// test module (test/readmodel); these tests need no server.

func TestPositionField(t *testing.T) {
	if got := mongodb.PositionField("balances@v2", 7); got != "_esmill.balances@v2.p7" {
		t.Fatalf("PositionField = %q", got)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  mongodb.Config
		ok   bool
	}{
		{"zero", mongodb.Config{}, true},
		{"prefix", mongodb.Config{CollectionPrefix: "rm_"}, true},
		{"bad prefix", mongodb.Config{CollectionPrefix: "a.b"}, false},
		{"bad mode", mongodb.Config{Transactions: 9}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate = %v", tc.name, err)
		}
	}
}
