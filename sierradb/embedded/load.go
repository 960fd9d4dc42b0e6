package embedded

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
)

// RecoveryKind says what [Start] did to a partition log.
type RecoveryKind int

const (
	// TornTail: the log ended in a write cut short by a crash (an
	// incomplete record, or zeros). It was not acknowledged; it was cut
	// off.
	TornTail RecoveryKind = iota + 1
	// Salvaged: the log was damaged, and Config.Salvage kept what precedes
	// the damage. The rest was moved to SavedTo.
	Salvaged
)

func (k RecoveryKind) String() string {
	switch k {
	case TornTail:
		return "torn tail cut"
	case Salvaged:
		return "damaged log salvaged"
	}
	return fmt.Sprintf("RecoveryKind(%d)", int(k))
}

// RecoveryAction is one change [Start] made to a partition log. See
// [Server.Recovery].
type RecoveryAction struct {
	Kind   RecoveryKind
	Path   string // the log
	Offset int64  // where it was cut
	Bytes  int64  // how many bytes were cut off
	// Records and Events count what the cut part held, as far as its
	// record headers could be read; Complete reports that they could be
	// read to the end, so the counts are exact. Otherwise they are lower
	// bounds.
	Records  int
	Events   int
	Complete bool
	Reason   string // what was found at Offset
	SavedTo  string // Salvaged: the file holding the bytes cut off
}

func (a RecoveryAction) String() string {
	exact := ""
	if !a.Complete {
		exact = "at least "
	}
	s := fmt.Sprintf("%s: %s at offset %d (%s): dropped %d bytes, %s%d records, %s%d events",
		a.Kind, a.Path, a.Offset, a.Reason, a.Bytes, exact, a.Records, exact, a.Events)
	if a.SavedTo != "" {
		s += "; saved to " + a.SavedTo
	}
	return s
}

// openDir opens every partition log of d into st, in parallel, and returns
// what recovery did.
func (st *store) openDir(d *dataDir, cacheBytes int64, salvage bool) ([]RecoveryAction, error) {
	ids, err := d.logFiles()
	if err != nil {
		return nil, err
	}
	st.dir = d
	st.cache = newBlockCache(cacheBytes)
	type result struct {
		log     *partitionLog
		streams map[string]*stream
		act     *RecoveryAction
		err     error
	}
	results := make([]result, len(ids))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(ids)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				r := &results[i]
				r.log, r.streams, r.act, r.err = st.openPartition(ids[i], salvage)
			}
		}()
	}
	for i := range ids {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	var acts []RecoveryAction
	fail := func(err error) ([]RecoveryAction, error) {
		for _, r := range results {
			if r.log != nil {
				r.log.f.Close()
			}
		}
		st.dir = nil
		return nil, err
	}
	for i, r := range results {
		if r.err != nil {
			return fail(r.err)
		}
		st.parts[ids[i]].log = r.log
		if r.act != nil {
			acts = append(acts, *r.act)
		}
	}
	// A stream id lives in one partition: the one of its partition key.
	for i, r := range results {
		for id, s := range r.streams {
			if other := st.streams[id]; other != nil {
				return fail(&CorruptLogError{Path: r.log.path, Offset: int64(s.firstOff), Reason: fmt.Sprintf(
					"stream %q is also in partition %d under partition key %s", id, other.pid, other.key)})
			}
			s.firstOff = 0
			st.streams[id] = s
		}
		results[i].streams = nil
	}
	for _, a := range acts {
		level := st.logger.Warn
		if a.Kind == Salvaged {
			level = st.logger.Error
		}
		level("partition log recovered", "action", a.Kind.String(), "path", a.Path, "offset", a.Offset,
			"bytes", a.Bytes, "records", a.Records, "events", a.Events, "complete", a.Complete,
			"reason", a.Reason, "saved_to", a.SavedTo)
	}
	if st.events.Load() > 1<<20 {
		// Give the garbage of building a large index back to the OS now
		// rather than when the scavenger gets to it.
		debug.FreeOSMemory()
	}
	return acts, nil
}
