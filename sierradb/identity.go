package sierradb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// ServerIDStream is the stream in which [Client.ServerID] keeps a server's
// identity. Its category, "esmill:server", can be no entity type's (a
// category has no ':'), so projections and consumers skip it.
const ServerIDStream = "esmill:server-id"

// serverIDEvent is the name of the stream's one event.
const serverIDEvent = "ServerIdentified"

// ServerID returns the identity of the SierraDB server (or cluster) the
// client talks to: a random id that the first caller appends as the only
// event of [ServerIDStream] (with EXPECTED_VERSION empty, so that of two
// racing callers one wins and both return its id), and that every later
// call reads from there.
//
// HELLO's peer_id cannot serve: a server draws a new one at every start.
// The identity lasts as long as the server's data instead: a server that
// lost its data (a memory-mode server restarted, a fresh data directory)
// or another server has another identity. Readers that keep checkpoints
// (projections, consumer groups) record it with them and refuse to go on
// from checkpoints taken on another server (tested:
// TestServerIDSurvivesRestart, TestServerIDDiffersAcrossServers).
func (c *Client) ServerID(ctx context.Context) (string, error) {
	read := func() (string, bool, error) {
		page, err := c.Scan(ctx, ServerIDStream, 0, End, WithCount(1))
		if err != nil {
			return "", false, fmt.Errorf("sierradb: read the server's identity: %w", err)
		}
		if len(page.Events) == 0 {
			return "", false, nil
		}
		id := string(page.Events[0].Payload)
		if id == "" {
			return "", false, fmt.Errorf("sierradb: the server's identity event in %q is empty; "+
				"something other than esmill wrote the stream", ServerIDStream)
		}
		return id, true, nil
	}
	id, ok, err := read()
	if err != nil || ok {
		return id, err
	}
	mine := uuid.NewString()
	_, err = c.Append(ctx, NewEvent{StreamID: ServerIDStream, Name: serverIDEvent, Payload: []byte(mine), ExpectedVersion: ExpectEmpty})
	if err == nil {
		return mine, nil
	}
	if !errors.Is(err, ErrWrongExpectedVersion) {
		return "", fmt.Errorf("sierradb: record the server's identity: %w", err)
	}
	// Another caller won the race. Its event becomes visible to reads
	// within milliseconds.
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		id, ok, err := read()
		if err != nil || ok {
			return id, err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("sierradb: read the server's identity: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
}
