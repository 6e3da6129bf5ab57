package llmr

/*
#include <stdint.h>
#include <stdlib.h>
#include <llmr.h>

// The Go callbacks of callbacks.go, as cgo exports them.
extern int32_t llmrGoOnChunk(char *chunk_json, uintptr_t handle);
extern void llmrGoOnDone(llmr_status status, char *json, uintptr_t handle);

// Adapters with the exact types of llmr_chunk_cb and llmr_done_cb. user_data carries a
// cgo.Handle, an integer: C never holds a Go pointer.
static int32_t llmr_go_chunk(const char *chunk_json, void *user_data) {
	return llmrGoOnChunk((char *)chunk_json, (uintptr_t)user_data);
}

static void llmr_go_done(llmr_status status, const char *json, void *user_data) {
	llmrGoOnDone(status, (char *)json, (uintptr_t)user_data);
}

static uint64_t llmr_go_complete_async(const char *request_json, uintptr_t handle) {
	return llmr_complete_async(request_json, llmr_go_done, (void *)handle);
}

static uint64_t llmr_go_stream_async(const char *request_json, uintptr_t handle) {
	return llmr_stream_async(request_json, llmr_go_chunk, llmr_go_done, (void *)handle);
}
*/
import "C"

import (
	"context"
	"errors"
	"runtime/cgo"
	"sync"
	"sync/atomic"
	"unsafe"
)

// A call is one asynchronous request: what the library's callback thread hands over, and what
// the goroutine that made the request waits on.
//
// No goroutine and no OS thread is spent on a request while it runs: the library drives it
// and reports on its callback thread ("llmr-callbacks"), which only copies the JSON into the
// call and wakes the waiting goroutine. Since that thread serves every request one callback
// at a time, nothing on it ever waits for user code.
type call struct {
	done   chan struct{} // closed by on_done once status and json are set
	status Status
	json   []byte // the response, or the error JSON

	// Streams only. The chunks that arrived and the caller's goroutine has not taken yet:
	// unbounded, so the callback thread never waits for a slow consumer. A stream's chunks add
	// up to its answer, which the library assembles in memory anyway, so this holds at most
	// about one more copy of it.
	keepChunks bool
	mu         sync.Mutex
	queue      [][]byte
	wake       chan struct{} // capacity 1: the queue has something
	stopped    atomic.Bool   // the caller wants no more chunks: on_chunk answers "stop"
}

func (c *call) push(chunk []byte) {
	c.mu.Lock()
	c.queue = append(c.queue, chunk)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default: // already signalled
	}
}

func (c *call) take() [][]byte {
	c.mu.Lock()
	q := c.queue
	c.queue = nil
	c.mu.Unlock()
	return q
}

func (c *call) finished() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// outcome is the result on_done reported.
func (c *call) outcome() ([]byte, error) {
	if c.status == StatusOK {
		return c.json, nil
	}
	return nil, parseError(c.status, c.json)
}

// start hands a request to the library. From then on the handle belongs to on_done, which
// runs exactly once, also when the request cannot start (id 0), and frees it.
func start(request []byte, stream, keepChunks bool) (*call, uint64, error) {
	creq, err := cRequest(request)
	if err != nil {
		return nil, 0, err
	}
	defer C.free(unsafe.Pointer(creq)) // the library reads the request before returning
	c := &call{done: make(chan struct{}), keepChunks: keepChunks}
	if stream {
		c.wake = make(chan struct{}, 1)
	}
	h := C.uintptr_t(cgo.NewHandle(c))
	var id C.uint64_t
	if stream {
		id = C.llmr_go_stream_async(creq, h)
	} else {
		id = C.llmr_go_complete_async(creq, h)
	}
	return c, uint64(id), nil
}

// cancelRequest asks the library to end a request now; its on_done then reports
// LLMR_ERR_CANCELLED, unless it had finished.
func cancelRequest(id uint64) {
	if id != 0 { // 0: the request never started; its on_done is already on its way
		C.llmr_cancel(C.uint64_t(id))
	}
}

// errStopDelivery marks a delivery stopped because ctx is done.
var errStopDelivery = errors.New("llmr: context done")

// perform runs one request to its end on the calling goroutine: a completion, or, with
// stream, a stream whose chunks go to onChunk (nil: not wanted) on this goroutine, in order.
func perform(ctx context.Context, request []byte, stream bool, onChunk func([]byte) error) ([]byte, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if ctx.Err() != nil {
		return nil, contextError(ctx, nil)
	}
	c, id, err := start(request, stream, onChunk != nil)
	if err != nil {
		return nil, err
	}
	return c.wait(ctx, id, onChunk)
}

func (c *call) wait(ctx context.Context, id uint64, onChunk func([]byte) error) ([]byte, error) {
	settled := false
	defer func() {
		if !settled {
			// onChunk panicked (or called runtime.Goexit): stop the request on the way out.
			// on_done still runs later and frees the handle.
			c.stopped.Store(true)
			cancelRequest(id)
		}
	}()
	for {
		select {
		case <-c.wake:
			if err := c.deliver(ctx, onChunk); err != nil {
				c.abandon(id)
				settled = true
				return nil, c.stopError(ctx, err)
			}
			continue
		case <-ctx.Done():
			if !c.finished() {
				c.abandon(id)
				settled = true
				return nil, contextError(ctx, c)
			}
			// It finished meanwhile: a finished request keeps its result, as in the C API.
		case <-c.done:
		}
		// on_done runs after the last on_chunk: every chunk is queued by now.
		err := c.deliver(ctx, onChunk)
		settled = true
		if err != nil {
			return nil, c.stopError(ctx, err)
		}
		return c.outcome()
	}
}

// deliver hands the queued chunks to onChunk, stopping at the first error it returns or when
// ctx is done (errStopDelivery).
func (c *call) deliver(ctx context.Context, onChunk func([]byte) error) error {
	for _, chunk := range c.take() {
		if onChunk == nil {
			continue
		}
		if ctx.Err() != nil {
			return errStopDelivery
		}
		if err := onChunk(chunk); err != nil {
			return err
		}
	}
	return nil
}

// abandon stops a request the caller no longer wants and waits for the library to confirm.
// No more chunks are taken: on_chunk answers "stop" and llmr_cancel ends the upstream call at
// once, so on_done follows promptly.
func (c *call) abandon(id uint64) {
	c.stopped.Store(true)
	cancelRequest(id)
	<-c.done
}

func (c *call) stopError(ctx context.Context, err error) error {
	if err == errStopDelivery {
		return contextError(ctx, c)
	}
	return err // the caller's own error from onChunk, as it was given
}

// contextError is the error of a request stopped because its context is done: it matches
// ErrCancelled and, through Unwrap, ctx.Err() (context.Canceled or context.DeadlineExceeded).
func contextError(ctx context.Context, c *call) error {
	e := newError(StatusCancelled, "the request's context is done")
	if c != nil && c.status == StatusCancelled {
		if lib := parseError(c.status, c.json); lib.Message != "" {
			e.Message = lib.Message
		}
	}
	e.cause = ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != e.cause {
		e.Message += ": " + cause.Error()
	}
	return e
}
