package readmodel_test

import (
	"testing"

	"github.com/google/uuid"

	"github.com/esmill/esmill/codec"
	"github.com/esmill/esmill/readmodel"
)

func TestMetaCausation(t *testing.T) {
	id := uuid.New()
	m := readmodel.Meta{EventID: id, StreamID: "acct-1", StreamVersion: 4, Position: readmodel.Position{Partition: 3, Sequence: 99}}
	if got, want := m.Causation(), (codec.Causation{EventID: id, StreamID: "acct-1", StreamVersion: 4}); got != want {
		t.Fatalf("Causation = %+v, want %+v", got, want)
	}
}
