package cqrs

import (
	"crypto/sha256"
	"encoding/binary"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/esmill/esmill"
)

// unknownOutcomes remembers, for a while, the Execute calls of a bus that
// ended without a reply, so that calling Execute again with the same
// command for the same entity retries it under the same command id
// instead of sending a new command: the executor then runs it at most
// once. Each remembered call is taken by one retry.
type unknownOutcomes struct {
	window time.Duration
	now    func() time.Time

	mu      sync.Mutex
	byPrint map[[32]byte][]unknownCall
	n       int
}

type unknownCall struct {
	id, correlation string
	at              time.Time
}

// maxUnknownOutcomes bounds the memory: beyond it, the oldest calls are
// forgotten (a retry of one of them is then a new command).
const maxUnknownOutcomes = 10000

func newUnknownOutcomes(window time.Duration, now func() time.Time) *unknownOutcomes {
	return &unknownOutcomes{window: window, now: now, byPrint: make(map[[32]byte][]unknownCall)}
}

// fingerprint identifies a command by what it asks for: the topic it goes
// to, the entity, and every key and byte of the message but its UUID and
// a correlation id the bus made up.
func fingerprint(topic string, msg *message.Message, generatedCorrelation bool) [32]byte {
	h := sha256.New()
	put := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	put(topic)
	put(string(msg.Payload))
	for _, k := range slices.Sorted(maps.Keys(msg.Metadata)) {
		if k == esmill.MetaCorrelationID && generatedCorrelation || k == esmill.MetaReplyTopic {
			continue
		}
		put(k)
		put(msg.Metadata[k])
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// take returns a remembered call for fp, forgetting it.
func (u *unknownOutcomes) take(fp [32]byte) (unknownCall, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	calls := u.byPrint[fp]
	cut := u.now().Add(-u.window)
	for len(calls) > 0 && calls[0].at.Before(cut) {
		calls = calls[1:]
		u.n--
	}
	if len(calls) == 0 {
		delete(u.byPrint, fp)
		return unknownCall{}, false
	}
	c := calls[0]
	if len(calls) == 1 {
		delete(u.byPrint, fp)
	} else {
		u.byPrint[fp] = calls[1:]
	}
	u.n--
	return c, true
}

// put remembers a call whose outcome is unknown.
func (u *unknownOutcomes) put(fp [32]byte, c unknownCall) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.expireLocked()
	if u.n >= maxUnknownOutcomes {
		u.dropOldestLocked()
	}
	u.byPrint[fp] = append(u.byPrint[fp], c)
	u.n++
}

func (u *unknownOutcomes) expireLocked() {
	if u.n == 0 {
		return
	}
	cut := u.now().Add(-u.window)
	for fp, calls := range u.byPrint {
		i := 0
		for i < len(calls) && calls[i].at.Before(cut) {
			i++
		}
		if i == 0 {
			continue
		}
		u.n -= i
		if i == len(calls) {
			delete(u.byPrint, fp)
		} else {
			u.byPrint[fp] = calls[i:]
		}
	}
}

func (u *unknownOutcomes) dropOldestLocked() {
	var oldest [32]byte
	var at time.Time
	found := false
	for fp, calls := range u.byPrint {
		if !found || calls[0].at.Before(at) {
			oldest, at, found = fp, calls[0].at, true
		}
	}
	if !found {
		return
	}
	calls := u.byPrint[oldest]
	if len(calls) == 1 {
		delete(u.byPrint, oldest)
	} else {
		u.byPrint[oldest] = calls[1:]
	}
	u.n--
}
