//go:build linux

package sierracluster

import (
	"net"
	"sync"
	"testing"
	"time"
)

// mdnsListener counts mDNS packets arriving on the root namespace's
// multicast-capable interfaces, by source address.
type mdnsListener struct {
	ifaces int
	mu     sync.Mutex
	from   map[string]int
	wg     sync.WaitGroup
}

// cluster subnet, which must never show up in the root namespace.
var clusterNet = &net.IPNet{IP: net.IPv4(10, 213, 0, 0), Mask: net.CIDRMask(24, 32)}

func listenMDNS(t *testing.T) *mdnsListener {
	t.Helper()
	l := &mdnsListener{from: map[string]int{}}
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	group := &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}
	var conns []*net.UDPConn
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagMulticast == 0 || ifi.Flags&net.FlagLoopback != 0 {
			continue
		}
		conn, err := net.ListenMulticastUDP("udp4", &ifi, group)
		if err != nil {
			t.Logf("mDNS listener on %s: %v", ifi.Name, err)
			continue
		}
		l.ifaces++
		conns = append(conns, conn)
		l.wg.Add(1)
		go l.read(conn)
	}
	if l.ifaces == 0 {
		t.Fatal("could not listen for mDNS on any root interface")
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
		l.wg.Wait()
	})
	return l
}

func (l *mdnsListener) read(conn *net.UDPConn) {
	defer l.wg.Done()
	buf := make([]byte, 9000)
	for {
		conn.SetReadDeadline(time.Now().Add(time.Minute))
		_, src, err := conn.ReadFromUDP(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return
		}
		l.mu.Lock()
		l.from[src.IP.String()]++
		l.mu.Unlock()
	}
}

// fromSubnet returns the sources in the cluster's subnet and their counts.
func (l *mdnsListener) fromSubnet() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for ip, n := range l.from {
		if clusterNet.Contains(net.ParseIP(ip)) {
			out[ip] = n
		}
	}
	return out
}

func (l *mdnsListener) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.from {
		n += c
	}
	return n
}
