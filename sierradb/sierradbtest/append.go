package sierradbtest

import (
	"context"

	"github.com/esmill/esmill/sierradb"
)

// AppendChunks appends evs to one stream whose version is version (-1:
// none yet) in EMAPPENDs of at most size events, each event expecting the
// version before it, calls each with every append's result, and returns
// the stream's new version.
func AppendChunks(ctx context.Context, c *sierradb.Client, stream string, version int64, evs []sierradb.NewEvent, size int, each func(sierradb.MultiAppendResult)) (int64, error) {
	for len(evs) > 0 {
		chunk := evs[:min(len(evs), size)]
		evs = evs[len(chunk):]
		for i := range chunk {
			chunk[i].StreamID = stream
			chunk[i].ExpectedVersion = sierradb.ExpectAfter(version)
			version++
		}
		res, err := c.AppendMulti(ctx, sierradb.StreamPartitionKey(stream), chunk)
		if err != nil {
			return version - int64(len(chunk)), err
		}
		if each != nil {
			each(res)
		}
	}
	return version, nil
}
