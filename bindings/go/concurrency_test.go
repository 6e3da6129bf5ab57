package llmr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// osThreads is the process's OS thread count (Linux), or -1.
func osThreads() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}

// checkNoGoroutineLeak records the goroutine count now and checks at the end of the test that
// it came back.
func checkNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			http.DefaultClient.CloseIdleConnections() // the stand-in control calls' keep-alives
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			t.Errorf("goroutines: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
	})
}

const concurrent = 1000

// TestConcurrentCalls: 1,000 requests in flight at once, from as many goroutines, half
// completions and half streams; none needs an OS thread of its own.
func TestConcurrentCalls(t *testing.T) {
	setup(t, mock("m", obj{"mock_response": "fine thanks", "mock_delay_ms": 2000}))
	checkNoGoroutineLeak(t)
	threadsBefore := osThreads()
	var wg sync.WaitGroup
	var failed atomic.Int32
	var firstErr atomic.Value
	start := time.Now()
	for i := range concurrent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp *Response
			var err error
			if i%2 == 0 {
				resp, err = Complete(context.Background(), user(fmt.Sprint("hi ", i)))
			} else {
				var text strings.Builder
				resp, err = Stream(context.Background(), user(fmt.Sprint("hi ", i)), func(c *Chunk) error {
					text.WriteString(c.Text())
					return nil
				})
				if err == nil && text.String() != resp.Text() {
					err = fmt.Errorf("chunks %q, assembled %q", text.String(), resp.Text())
				}
			}
			if err == nil && resp.Text() != "fine thanks" {
				err = fmt.Errorf("text %q", resp.Text())
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		}()
	}
	// All in flight at once: the MOCK delay holds each for 2 s, time enough to start them all
	// even on a loaded machine.
	peakThreads := 0
	eventually(t, 10*time.Second, "1,000 requests in flight", func() bool {
		peakThreads = max(peakThreads, osThreads())
		return inFlight(t) == concurrent
	})
	peakThreads = max(peakThreads, osThreads())
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d calls failed, e.g. %v", n, concurrent, firstErr.Load())
	}
	t.Logf("%d calls in %v; OS threads %d before, %d at the peak", concurrent, time.Since(start), threadsBefore, peakThreads)
	if threadsBefore > 0 && peakThreads > threadsBefore+64 {
		t.Errorf("OS threads grew from %d to %d for %d requests: a thread per request?", threadsBefore, peakThreads, concurrent)
	}
	if inFlight(t) != 0 {
		t.Error("requests left in flight")
	}
}

// TestConcurrentCancelHalf: 1,000 requests in flight, half of them cancelled through their
// context; the cancelled ones return at once, the others succeed.
func TestConcurrentCancelHalf(t *testing.T) {
	setup(t, mock("m", obj{"mock_response": "done", "mock_delay_ms": 2000}))
	checkNoGoroutineLeak(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var ok, cancelled, wrong atomic.Int32
	var lateCancel atomic.Int64 // the longest a cancelled call took to return after the cancel
	var cancelledAt atomic.Int64
	for i := range concurrent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := context.Background()
			if i%2 == 0 {
				c = ctx
			}
			var err error
			if i%4 < 2 {
				_, err = Complete(c, user("hi"))
			} else {
				_, err = Stream(c, user("hi"), func(*Chunk) error { return nil })
			}
			switch {
			case err == nil && i%2 == 1:
				ok.Add(1)
			case i%2 == 0 && errors.Is(err, ErrCancelled) && errors.Is(err, context.Canceled):
				cancelled.Add(1)
				for {
					d, cur := time.Now().UnixNano()-cancelledAt.Load(), lateCancel.Load()
					if d <= cur || lateCancel.CompareAndSwap(cur, d) {
						break
					}
				}
			default:
				wrong.Add(1)
				t.Errorf("request %d: %v", i, err)
			}
		}()
	}
	eventually(t, 10*time.Second, "1,000 requests in flight", func() bool { return inFlight(t) == concurrent })
	cancelledAt.Store(time.Now().UnixNano())
	cancel()
	wg.Wait()
	if ok.Load() != concurrent/2 || cancelled.Load() != concurrent/2 || wrong.Load() != 0 {
		t.Fatalf("%d succeeded, %d cancelled, %d wrong", ok.Load(), cancelled.Load(), wrong.Load())
	}
	if d := time.Duration(lateCancel.Load()); d > time.Second {
		t.Errorf("a cancelled call returned %v after the cancel", d)
	}
	if inFlight(t) != 0 {
		t.Error("requests left in flight")
	}
}

// TestConcurrentHTTP: many requests over real HTTP to the stand-in at once.
func TestConcurrentHTTP(t *testing.T) {
	setup(t, openAI("slow-200"))
	checkNoGoroutineLeak(t)
	const n = 500
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := fmt.Sprint("request ", i)
			var resp *Response
			var err error
			if i%2 == 0 {
				resp, err = Complete(context.Background(), user(msg))
			} else {
				resp, err = Stream(context.Background(), user(msg), nil)
			}
			if err == nil && resp.Text() != "echo: "+msg {
				err = fmt.Errorf("request %d answered %q", i, resp.Text())
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if c := upstreamCount(t, "slow-200"); c != n {
		t.Errorf("%d upstream requests for %d calls", c, n)
	}
}
