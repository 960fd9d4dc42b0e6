package lease

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// RedisStore is a [Store] in Redis, shared by every process that uses the
// same Redis and prefix. Expiry runs on the Redis server's clock (TIME
// inside the scripts). Each group's keys share one hash tag, so the store
// works on a Redis Cluster too. It does not close the client.
type RedisStore struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewRedisStore returns a store on a go-redis client. Keys are
// "{<prefix><group>}:members", ":meta", ":owners" and ":tokens".
// Default prefix: "esmill:lease:".
func NewRedisStore(rdb redis.UniversalClient, prefix string) *RedisStore {
	if prefix == "" {
		prefix = "esmill:lease:"
	}
	return &RedisStore{rdb: rdb, prefix: prefix}
}

func (s *RedisStore) keys(group string, names ...string) []string {
	tag := "{" + s.prefix + group + "}:"
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = tag + n
	}
	return out
}

// Server time in milliseconds, inside a script.
const luaNow = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// KEYS: members, meta. ARGV: instance, ttl ms, partitions.
// Returns {partitions, member...} or {-1, have} on a count mismatch.
var heartbeatScript = redis.NewScript(luaNow + `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local others = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then others = others - 1 end
local have = tonumber(redis.call('HGET', KEYS[2], 'partitions') or '0')
local want = tonumber(ARGV[3])
if others > 0 and have ~= 0 and have ~= want then
  return {-1, have}
end
redis.call('HSET', KEYS[2], 'partitions', want)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[2]) * 10, 60000))
redis.call('PEXPIRE', KEYS[2], math.max(tonumber(ARGV[2]) * 10, 60000))
local out = {want}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do table.insert(out, m) end
return out
`)

// KEYS: owners, tokens. ARGV: instance, ttl ms, partition...
// Owners hold "<expiry ms>|<instance>". Returns {partition, token, ...}.
var acquireScript = redis.NewScript(luaNow + `
local out = {}
for i = 3, #ARGV do
  local p = ARGV[i]
  local v = redis.call('HGET', KEYS[1], p)
  local live, mine = false, false
  if v then
    local sep = string.find(v, '|', 1, true)
    live = tonumber(string.sub(v, 1, sep - 1)) > now
    mine = string.sub(v, sep + 1) == ARGV[1]
  end
  if not live or mine then
    local tok
    if live and mine then
      tok = tonumber(redis.call('HGET', KEYS[2], p) or '0')
    else
      tok = redis.call('HINCRBY', KEYS[2], p, 1)
    end
    redis.call('HSET', KEYS[1], p, (now + tonumber(ARGV[2])) .. '|' .. ARGV[1])
    table.insert(out, tonumber(p))
    table.insert(out, tok)
  end
end
return out
`)

// KEYS: owners. ARGV: instance, partition...
var releaseScript = redis.NewScript(`
for i = 2, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v then
    local sep = string.find(v, '|', 1, true)
    if string.sub(v, sep + 1) == ARGV[1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
  end
end
return 1
`)

// KEYS: members, meta. Returns {live members, partitions}.
var groupScript = redis.NewScript(luaNow + `
local live = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local have = tonumber(redis.call('HGET', KEYS[2], 'partitions') or '0')
return {live, have}
`)

// GroupPartitions implements [GroupReader].
func (s *RedisStore) GroupPartitions(ctx context.Context, group string) (int, bool, error) {
	if err := ValidateName("group", group); err != nil {
		return 0, false, err
	}
	res, err := groupScript.Run(ctx, s.rdb, s.keys(group, "members", "meta")).Int64Slice()
	if err != nil {
		return 0, false, fmt.Errorf("lease: partition count of group %s: %w", group, err)
	}
	if len(res) != 2 || res[0] == 0 || res[1] == 0 {
		return 0, false, nil
	}
	return int(res[1]), true, nil
}

// Heartbeat implements [Store].
func (s *RedisStore) Heartbeat(ctx context.Context, req HeartbeatRequest) (Membership, error) {
	if err := validateRequest(req.Group, req.Instance, req.TTL); err != nil {
		return Membership{}, err
	}
	res, err := heartbeatScript.Run(ctx, s.rdb, s.keys(req.Group, "members", "meta"),
		req.Instance, req.TTL.Milliseconds(), req.Partitions).Slice()
	if err != nil {
		return Membership{}, fmt.Errorf("lease: heartbeat of %s in group %s: %w", req.Instance, req.Group, err)
	}
	if len(res) == 0 {
		return Membership{}, fmt.Errorf("lease: heartbeat of %s in group %s: empty reply", req.Instance, req.Group)
	}
	n, _ := res[0].(int64)
	if n < 0 {
		have := int64(0)
		if len(res) > 1 {
			have, _ = res[1].(int64)
		}
		return Membership{}, &PartitionCountError{Group: req.Group, Have: int(have), Want: req.Partitions}
	}
	ms := Membership{Partitions: int(n)}
	for _, m := range res[1:] {
		if s, ok := m.(string); ok {
			ms.Members = append(ms.Members, s)
		}
	}
	slices.Sort(ms.Members)
	return ms, nil
}

// Acquire implements [Store].
func (s *RedisStore) Acquire(ctx context.Context, req AcquireRequest) ([]Grant, error) {
	if err := validateRequest(req.Group, req.Instance, req.TTL); err != nil {
		return nil, err
	}
	if len(req.Partitions) == 0 {
		return nil, nil
	}
	args := make([]any, 0, 2+len(req.Partitions))
	args = append(args, req.Instance, req.TTL.Milliseconds())
	for _, p := range req.Partitions {
		args = append(args, strconv.Itoa(p))
	}
	res, err := acquireScript.Run(ctx, s.rdb, s.keys(req.Group, "owners", "tokens"), args...).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("lease: acquire for %s in group %s: %w", req.Instance, req.Group, err)
	}
	grants := make([]Grant, 0, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		grants = append(grants, Grant{Partition: int(res[i]), Token: uint64(res[i+1])})
	}
	return grants, nil
}

// Release implements [Store].
func (s *RedisStore) Release(ctx context.Context, group, instance string, partitions []int) error {
	if len(partitions) == 0 {
		return nil
	}
	args := make([]any, 0, 1+len(partitions))
	args = append(args, instance)
	for _, p := range partitions {
		args = append(args, strconv.Itoa(p))
	}
	if err := releaseScript.Run(ctx, s.rdb, s.keys(group, "owners"), args...).Err(); err != nil {
		return fmt.Errorf("lease: release for %s in group %s: %w", instance, group, err)
	}
	return nil
}

// Leave implements [Store].
func (s *RedisStore) Leave(ctx context.Context, group, instance string) error {
	if err := s.rdb.ZRem(ctx, s.keys(group, "members")[0], instance).Err(); err != nil {
		return fmt.Errorf("lease: leave of %s from group %s: %w", instance, group, err)
	}
	return nil
}
