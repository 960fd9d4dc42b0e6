package ferret

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/esmill/esmill/internal/leakcheck"

	"github.com/esmill/esmill/internal/testservice"
)

func TestMain(m *testing.M) {
	code := m.Run()
	StopAll()
	testservice.StopAll()
	os.Exit(leakcheck.After(code))
}

// FerretDB is ready when serverStatus names the process started here; a
// FerretDB of another process, or a server of another kind, is not it.
func TestOwnFerretChecksTheProcess(t *testing.T) {
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := strings.TrimSuffix(strings.TrimPrefix(s.URI, "mongodb://"), "/")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ownFerret(ctx, addr, s.proc.Pid()); err != nil {
		t.Fatalf("FerretDB is not itself: %v", err)
	}
	if err := ownFerret(ctx, addr, s.proc.Pid()+1); err == nil || !strings.Contains(err.Error(), "not the FerretDB started here") {
		t.Fatalf("FerretDB passed for another pid: %v", err)
	}
	redis := testservice.RequireRedis(t)
	short, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	if err := ownFerret(short, redis, s.proc.Pid()); err == nil {
		t.Fatal("a Redis passed for FerretDB")
	}
}
