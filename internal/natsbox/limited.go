package natsbox

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/net/netutil"
)

// ServeLimited serves the clients that connect to ln on s, at most max at
// once: a connection beyond waits in the kernel's backlog until one
// closes, so however fast anyone connects the process holds at most max of
// their descriptors (nats-server's own listener accepts every connection
// and only then refuses those over its max_connections: a flood keeps as
// many descriptors as it has connections in flight). s must run with
// DontListen. Each connection is handed to s in-process
// ((*server.Server).InProcessConn), so s's TLS, authentication and limits
// apply as on a listener of its own, except that s offers TLS rather than
// requiring it (clients that pin its certificate require it).
//
// It returns at once; stop closes ln and waits for the accept loop (the
// connections end when s shuts down).
func ServeLimited(s *server.Server, ln net.Listener, max int, log *slog.Logger) (stop func()) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	limited := netutil.LimitListener(ln, max)
	var wg sync.WaitGroup
	wg.Go(func() {
		delay := 5 * time.Millisecond
		for {
			c, err := limited.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil { // out of descriptors, say: wait, as net/http does
				log.Warn("nats client accept failed; retrying", "error", err, "in", delay)
				time.Sleep(delay)
				delay = min(2*delay, time.Second)
				continue
			}
			delay = 5 * time.Millisecond
			go relay(s, c)
		}
	})
	return func() {
		_ = ln.Close()
		wg.Wait()
	}
}

// relay passes the bytes of client c to and from an in-process connection
// to s until either side closes, then closes both.
func relay(s *server.Server, c net.Conn) {
	pc, err := s.InProcessConn()
	if err != nil {
		_ = c.Close()
		return
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(pc, c)
		_ = pc.Close()
		close(done)
	}()
	_, _ = io.Copy(c, pc)
	_ = c.Close()
	_ = pc.Close()
	<-done
}
