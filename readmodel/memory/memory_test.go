package memory_test

import (
	"context"
	"maps"
	"os"
	"testing"

	"github.com/esmill/esmill/internal/testservice"

	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/checkpointtest"
	"github.com/esmill/esmill/readmodel/memory"
)

func TestMain(m *testing.M) { os.Exit(testservice.Main(m)) }

type model = map[string]int64

func newStore() *memory.Store[model] {
	return memory.New(memory.Config[model]{New: func() model { return model{} }, Clone: maps.Clone[model]})
}

func harness(s func() *memory.Store[model]) checkpointtest.Harness[*memory.Tx[model]] {
	return checkpointtest.Harness[*memory.Tx[model]]{
		New: func(t testing.TB) readmodel.Store[*memory.Tx[model]] { return s() },
		Add: func(ctx context.Context, tx *memory.Tx[model], projection, key string, delta int64) error {
			(*tx.Model())[key] += delta
			return nil
		},
		Get: func(ctx context.Context, st readmodel.Store[*memory.Tx[model]], projection, key string) (v int64, ok bool, err error) {
			st.(*memory.Store[model]).Read(projection, func(m model) { v, ok = m[key] })
			return v, ok, nil
		},
	}
}

func TestContract(t *testing.T) {
	checkpointtest.Run(t, harness(newStore))
}

// The default Clone (a CBOR round trip) works too.
func TestContractDefaultClone(t *testing.T) {
	checkpointtest.Run(t, harness(func() *memory.Store[model] {
		return memory.New(memory.Config[model]{New: func() model { return model{} }})
	}))
}

// The runner against the real SierraDB, which makes appends visible
// asynchronously.
func TestContractRealSierraDB(t *testing.T) {
	h := harness(newStore)
	h.SierraAddr = testservice.RequireSierraDB
	checkpointtest.Run(t, h)
}
