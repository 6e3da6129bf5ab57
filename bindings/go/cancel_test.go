package llmr

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// wantCancelled checks an error caused by the context: ErrCancelled and ctxErr both match.
func wantCancelled(t testing.TB, err, ctxErr error) {
	t.Helper()
	wantStatus(t, err, ErrCancelled)
	if !errors.Is(err, ctxErr) {
		t.Fatalf("error %v does not match %v", err, ctxErr)
	}
	if errors.Is(err, ErrTimeout) {
		t.Fatal("a cancellation matches ErrTimeout")
	}
}

// TestCancelContext: cancelling the context of a request that hangs upstream ends it at once,
// in the library too (nothing left in flight, no retry sent).
func TestCancelContext(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "complete", true: "stream"}[stream], func(t *testing.T) {
			setup(t, openAI("hang"))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				var err error
				if stream {
					_, err = Stream(ctx, user("hi"), func(*Chunk) error { return nil })
				} else {
					_, err = Complete(ctx, user("hi"))
				}
				errc <- err
			}()
			eventually(t, 5*time.Second, "the request reaches the stand-in", func() bool { return upstreamCount(t, "hang") == 1 })
			if inFlight(t) != 1 {
				t.Fatalf("in flight: %d", inFlight(t))
			}
			cancelled := time.Now()
			cancel()
			select {
			case err := <-errc:
				if d := time.Since(cancelled); d > 500*time.Millisecond {
					t.Errorf("returned %v after the cancel", d)
				}
				wantCancelled(t, err, context.Canceled)
			case <-time.After(5 * time.Second):
				t.Fatal("the request did not return after its context was cancelled")
			}
			if n := inFlight(t); n != 0 {
				t.Errorf("%d requests still in flight in the library", n)
			}
			time.Sleep(50 * time.Millisecond)
			if n := upstreamCount(t, "hang"); n != 1 {
				t.Errorf("%d upstream requests after the cancel", n)
			}
		})
	}
}

func TestDeadline(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "complete", true: "stream"}[stream], func(t *testing.T) {
			setup(t, openAI("hang"))
			ctx := ctxTimeout(t, 200*time.Millisecond)
			start := time.Now()
			var err error
			if stream {
				_, err = StreamJSON(ctx, []byte(`{"messages":[{"role":"user","content":"hi"}]}`), func([]byte) error { return nil })
			} else {
				_, err = CompleteJSON(ctx, []byte(`{"messages":[{"role":"user","content":"hi"}]}`))
			}
			if d := time.Since(start); d < 200*time.Millisecond || d > 1500*time.Millisecond {
				t.Errorf("returned after %v for a 200ms deadline", d)
			}
			wantCancelled(t, err, context.DeadlineExceeded)
			if errors.Is(err, context.Canceled) {
				t.Error("a deadline matches context.Canceled")
			}
			if n := inFlight(t); n != 0 {
				t.Errorf("%d requests still in flight in the library", n)
			}
		})
	}
}

// TestCancelMidStream: a stream cancelled between chunks stops delivering at once.
func TestCancelMidStream(t *testing.T) {
	setup(t, mock("m", obj{"mock_response": strings.Repeat("word ", 100), "mock_chunk_delay_ms": 20}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	var cancelledAt time.Time
	_, err := Stream(ctx, user("talk"), func(*Chunk) error {
		if n++; n == 3 {
			cancel()
			cancelledAt = time.Now()
		}
		return nil
	})
	if d := time.Since(cancelledAt); d > 500*time.Millisecond {
		t.Errorf("returned %v after the cancel", d)
	}
	wantCancelled(t, err, context.Canceled)
	if n != 3 {
		t.Errorf("%d chunks delivered, the context was cancelled at the 3rd", n)
	}
	if inFlight(t) != 0 {
		t.Error("the stream is still in flight in the library")
	}
}

func TestAlreadyCancelledContext(t *testing.T) {
	setup(t, openAI("ok"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Complete(ctx, user("hi"))
	wantCancelled(t, err, context.Canceled)
	_, err = Stream(ctx, user("hi"), nil)
	wantCancelled(t, err, context.Canceled)
	if n := upstreamCount(t, "ok"); n != 0 {
		t.Errorf("%d requests sent with a cancelled context", n)
	}
}

func TestCancelCause(t *testing.T) {
	setup(t, openAI("hang"))
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel(errors.New("the user left"))
	}()
	_, err := Complete(ctx, user("hi"))
	wantCancelled(t, err, context.Canceled)
	if !strings.Contains(err.Error(), "the user left") {
		t.Errorf("the cause is not in %q", err.Error())
	}
}
