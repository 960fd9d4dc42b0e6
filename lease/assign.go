package lease

import (
	"hash/fnv"
	"strconv"
)

// Assign returns the partitions of 0..partitions-1 that instance should
// own among members, by rendezvous (highest random weight) hashing: each
// partition goes to the member with the highest hash of (member,
// partition). Every instance computes the same assignment from the same
// members, and a member joining or leaving moves only the partitions it
// takes or gives up. An instance that is not among members gets nothing.
func Assign(members []string, instance string, partitions int) []int {
	if !contains(members, instance) {
		return nil
	}
	var own []int
	for p := range partitions {
		if owner(members, p) == instance {
			own = append(own, p)
		}
	}
	return own
}

func owner(members []string, p int) string {
	var best string
	var bestW uint64
	ps := strconv.Itoa(p)
	for _, m := range members {
		h := fnv.New64a()
		h.Write([]byte(m))
		h.Write([]byte{0})
		h.Write([]byte(ps))
		// FNV's low bits mix poorly for short inputs; a final avalanche
		// spreads partitions evenly.
		w := mix(h.Sum64())
		if best == "" || w > bestW || (w == bestW && m < best) {
			best, bestW = m, w
		}
	}
	return best
}

// mix is the finaliser of SplitMix64.
func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
