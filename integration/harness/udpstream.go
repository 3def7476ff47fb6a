package harness

// A continuous UDP stream between two namespaces, to measure what an
// operation under live traffic (an upgrade, churn, a sync) costs the
// traffic: datagrams lost and the longest silence.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// UDPStream sends numbered datagrams at a fixed interval and counts what
// arrives.
type UDPStream struct {
	from, to string
	interval time.Duration
	conn     net.Conn
	rx       *net.UDPConn
	stop     chan struct{} // closed: stop sending
	done     chan struct{} // closed: stop receiving
	wg       sync.WaitGroup
	once     sync.Once
	final    StreamStats

	mu       sync.Mutex
	sent     int
	seen     map[uint32]bool
	dups     int
	lastRx   time.Time
	firstRx  time.Time
	started  time.Time
	longest  time.Duration
	sendErrs int
}

// StreamStats is the outcome of a stream.
type StreamStats struct {
	Sent, Received, Lost, Duplicates, SendErrors int
	// LongestGap is the longest time between two datagrams received (or
	// from the last one to the end): the outage an operation caused.
	LongestGap time.Duration
}

func (s StreamStats) String() string {
	return fmt.Sprintf("%d sent, %d received, %d lost, %d duplicated, %d send errors, longest gap %s",
		s.Sent, s.Received, s.Lost, s.Duplicates, s.SendErrors, s.LongestGap.Round(time.Millisecond))
}

// StartUDPStream streams from ns to a socket opened in server, reached at
// dst, one datagram every interval, until Stop (or the end of t).
func (ns *NS) StartUDPStream(t testing.TB, server *NS, dst netip.Addr, interval time.Duration) *UDPStream {
	t.Helper()
	rx := server.ListenUDP(t, ":0")
	port := uint16(rx.LocalAddr().(*net.UDPAddr).Port)
	var c net.Conn
	err := ns.Do(func() (err error) {
		c, err = net.Dial("udp4", netip.AddrPortFrom(dst, port).String())
		return err
	})
	if err != nil {
		t.Fatalf("stream %s -> %s: %v", ns, dst, err)
	}
	s := &UDPStream{from: ns.String(), to: dst.String(), interval: interval, conn: c, rx: rx,
		stop: make(chan struct{}), done: make(chan struct{}), seen: map[uint32]bool{}}
	s.started = time.Now()
	s.wg.Add(2)
	go s.receive()
	go s.send()
	t.Cleanup(func() { s.Stop() })
	return s
}

func (s *UDPStream) send() {
	defer s.wg.Done()
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	buf := make([]byte, 64)
	for seq := uint32(0); ; seq++ {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		binary.BigEndian.PutUint32(buf, seq)
		_, err := s.conn.Write(buf)
		s.mu.Lock()
		s.sent++
		if err != nil {
			// ECONNREFUSED from an earlier ICMP error, for instance:
			// the datagram is counted as sent and lost.
			s.sendErrs++
		}
		s.mu.Unlock()
	}
}

func (s *UDPStream) receive() {
	defer s.wg.Done()
	buf := make([]byte, 64)
	for {
		_ = s.rx.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := s.rx.Read(buf)
		select {
		case <-s.done:
			return
		default:
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			continue
		}
		if err != nil {
			return
		}
		if n < 4 {
			continue
		}
		now := time.Now()
		seq := binary.BigEndian.Uint32(buf)
		s.mu.Lock()
		if s.seen[seq] {
			s.dups++
		}
		s.seen[seq] = true
		if s.lastRx.IsZero() {
			s.firstRx = now
		} else if gap := now.Sub(s.lastRx); gap > s.longest {
			s.longest = gap
		}
		s.lastRx = now
		s.mu.Unlock()
	}
}

// Snapshot is the stream's figures so far.
func (s *UDPStream) Snapshot() StreamStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := StreamStats{Sent: s.sent, Received: len(s.seen), Duplicates: s.dups, SendErrors: s.sendErrs, LongestGap: s.longest}
	st.Lost = max(0, st.Sent-st.Received)
	return st
}

// Stop ends the stream, waits a moment for datagrams in flight, and
// returns its figures. Calling it again returns the same figures.
func (s *UDPStream) Stop() StreamStats {
	s.once.Do(func() {
		close(s.stop)
		stopped := time.Now()
		time.Sleep(4*s.interval + 50*time.Millisecond)
		close(s.done)
		_ = s.conn.Close()
		_ = s.rx.SetReadDeadline(time.Now())
		s.wg.Wait()
		s.final = s.Snapshot()
		s.mu.Lock()
		defer s.mu.Unlock()
		// A silence at the end counts as well.
		if s.lastRx.IsZero() {
			s.final.LongestGap = stopped.Sub(s.startedAt())
		} else if tail := stopped.Sub(s.lastRx); tail > s.final.LongestGap {
			s.final.LongestGap = tail
		}
	})
	return s.final
}

func (s *UDPStream) startedAt() time.Time { return s.started }
