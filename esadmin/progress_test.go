package esadmin

import (
	"strings"
	"testing"
	"time"
)

// The progress bar and line show the share done, the rate and the ETA.
func TestProgressText(t *testing.T) {
	p := Progress{Projection: "balances", Done: 250, Total: 1000, Rate: 500, ETA: 1500 * time.Millisecond, Elapsed: 500 * time.Millisecond}
	if got, want := progressLine(p), "rebuild balances: 250/1000 events (25.0%), 500 events/s, ETA 1.5s"; got != want {
		t.Errorf("line %q, want %q", got, want)
	}
	if got := progressBar(p, 20); !strings.HasPrefix(got, "balances [=====               ]  25% 250/1000 500/s ETA 1.5s") {
		t.Errorf("bar %q", got)
	}
	p.Done, p.Finished = 1000, true
	if got := progressBar(p, 20); !strings.Contains(got, "[====================] 100%") || !strings.Contains(got, "done in 500ms") {
		t.Errorf("finished bar %q", got)
	}
	if got := progressLine(Progress{Projection: "p", Total: 0}); !strings.Contains(got, "(100.0%)") || !strings.Contains(got, "ETA unknown") {
		t.Errorf("empty %q", got)
	}
}
