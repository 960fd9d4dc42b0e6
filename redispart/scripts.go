package redispart

import (
	"strings"

	"github.com/redis/go-redis/v9"
)

// positionsKey names the hash that holds every group's position and
// generation for a topic. It shares the stream's hash slot, so that the
// ack script may touch both on a Redis Cluster: a topic without a hash tag
// is hashed whole, so "{topic}" is its tag; a topic with one keeps it.
func positionsKey(topic string) string {
	if hasHashTag(topic) {
		return topic + ":esmill.positions"
	}
	return "{" + topic + "}:esmill.positions"
}

// hasHashTag reports whether Redis Cluster hashes key by a tag: a "{"
// followed, later, by a "}" with something between them.
func hasHashTag(key string) bool {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return false
	}
	j := strings.IndexByte(key[i+1:], '}')
	return j > 0
}

// Fields of the positions hash, per group.
func genField(group string) string { return group + ".gen" }
func posField(group string) string { return group + ".pos" }

// claimScript takes a topic's position over for a new subscription. A
// group's first subscription records position 0-0, so that trimming
// waits for the group from then on.
// KEYS: positions. ARGV: group. Returns {generation, position}.
var claimScript = redis.NewScript(`
local gen = redis.call('HINCRBY', KEYS[1], ARGV[1] .. '.gen', 1)
redis.call('HSETNX', KEYS[1], ARGV[1] .. '.pos', '0-0')
local pos = redis.call('HGET', KEYS[1], ARGV[1] .. '.pos')
return {gen, pos}
`)

// luaCompareIDs compares two stream entry ids ("ms-seq").
const luaCompareIDs = `
local function split(id)
  local sep = string.find(id, '-', 1, true)
  if not sep then return tonumber(id) or 0, 0 end
  return tonumber(string.sub(id, 1, sep - 1)) or 0, tonumber(string.sub(id, sep + 1)) or 0
end
local function less(a, b)
  local am, as = split(a)
  local bm, bs = split(b)
  return am < bm or (am == bm and as < bs)
end
`

// ackScript records an acked entry as the group's position, if the
// subscription still holds the topic (its generation is the newest), and
// trims what every group of the topic has acked.
// KEYS: positions, stream. ARGV: group, generation, entry id, trim (1/0).
// Returns 1, or 0 when a newer subscription took the topic over.
var ackScript = redis.NewScript(luaCompareIDs + `
local gen = tonumber(redis.call('HGET', KEYS[1], ARGV[1] .. '.gen') or '0')
if gen ~= tonumber(ARGV[2]) then return 0 end
local cur = redis.call('HGET', KEYS[1], ARGV[1] .. '.pos') or '0-0'
if less(cur, ARGV[3]) then redis.call('HSET', KEYS[1], ARGV[1] .. '.pos', ARGV[3]) end
if ARGV[4] == '1' then
  local all = redis.call('HGETALL', KEYS[1])
  local low = nil
  for i = 1, #all, 2 do
    local f = all[i]
    if string.sub(f, -4) == '.pos' then
      if low == nil or less(all[i + 1], low) then low = all[i + 1] end
    end
  end
  if low ~= nil and low ~= '0-0' then redis.call('XTRIM', KEYS[2], 'MINID', '~', low) end
end
return 1
`)
