package llmr

import (
	"context"
	"encoding/json"
	"errors"
	"iter"
)

// CompleteJSON runs a chat completion, routed. request is the OpenAI chat-completions body
// (messages required; model "auto" by default); the result is the chat.completion JSON with
// llmr's "llmr" member.
//
// When ctx is cancelled or its deadline passes, the request is cancelled in the library (its
// upstream call is dropped) and CompleteJSON returns promptly with an error matching both
// ErrCancelled and ctx.Err(). While the request runs no goroutine is busy and no OS thread is
// blocked on its behalf: the calling goroutine is parked like on a channel receive.
func CompleteJSON(ctx context.Context, request []byte) ([]byte, error) {
	return perform(ctx, request, false, nil)
}

// StreamJSON runs a streamed chat completion, routed. onChunk gets each chat.completion.chunk
// JSON that carries content or tool-call deltas, in order, on the calling goroutine (never
// concurrently); the slice is the caller's to keep. The result is the whole answer assembled
// as a chat.completion, with finish_reason and usage.
//
// If onChunk returns an error, the stream stops (the upstream request is dropped) and
// StreamJSON returns that error. ctx works as for CompleteJSON; chunks not yet delivered when
// it is done are dropped. A failure before the first chunk fails over like a completion; one
// after it ends the stream with ErrUpstream (or ErrTimeout for an idle gap).
//
// The library never waits for onChunk: chunks that arrive while it runs are queued, so a slow
// onChunk delays only its own stream's delivery, never other requests.
func StreamJSON(ctx context.Context, request []byte, onChunk func(chunk []byte) error) ([]byte, error) {
	return perform(ctx, request, true, onChunk)
}

// Complete runs a chat completion, routed; see CompleteJSON.
func Complete(ctx context.Context, req *Request) (*Response, error) {
	body, err := encodeRequest(req)
	if err != nil {
		return nil, err
	}
	out, err := CompleteJSON(ctx, body)
	if err != nil {
		return nil, err
	}
	return decodeResponse(out)
}

// Stream runs a streamed chat completion, routed, calling onChunk (which may be nil) for each
// chunk on the calling goroutine, and returns the assembled response; see StreamJSON.
func Stream(ctx context.Context, req *Request, onChunk func(*Chunk) error) (*Response, error) {
	body, err := encodeRequest(req)
	if err != nil {
		return nil, err
	}
	var each func([]byte) error
	if onChunk != nil {
		each = func(b []byte) error {
			c := &Chunk{Raw: b}
			if err := json.Unmarshal(b, c); err != nil {
				return newError(StatusInternal, "cannot decode a stream chunk: "+err.Error())
			}
			return onChunk(c)
		}
	}
	out, err := StreamJSON(ctx, body, each)
	if err != nil {
		return nil, err
	}
	return decodeResponse(out)
}

// errIterationStopped is what StreamSeq's callback returns when the loop body breaks out.
var errIterationStopped = errors.New("llmr: iteration stopped")

// StreamSeq runs a streamed chat completion as an iterator of chunks, for a range loop:
//
//	chunks, result := llmr.StreamSeq(ctx, req)
//	for chunk, err := range chunks {
//		if err != nil {
//			return err // the stream failed: no more chunks
//		}
//		fmt.Print(chunk.Text())
//	}
//	resp, err := result() // the assembled response, once the loop is over
//
// The request starts when the loop starts and runs on the looping goroutine. A failure ends
// the sequence with one (nil, err) pair. Breaking out of the loop cancels the stream; result
// then reports an error matching ErrCancelled. The sequence can be ranged over once; result
// must be called after the loop, from the same goroutine or after synchronising with it.
func StreamSeq(ctx context.Context, req *Request) (chunks iter.Seq2[*Chunk, error], result func() (*Response, error)) {
	var (
		used bool
		resp *Response
		err  error = newError(StatusInvalidArgument, "StreamSeq: result called before the chunks were ranged over to the end")
	)
	chunks = func(yield func(*Chunk, error) bool) {
		if used {
			yield(nil, newError(StatusInvalidArgument, "StreamSeq: the chunks can be ranged over only once"))
			return
		}
		used = true
		resp, err = Stream(ctx, req, func(c *Chunk) error {
			if !yield(c, nil) {
				return errIterationStopped
			}
			return nil
		})
		if errors.Is(err, errIterationStopped) {
			resp, err = nil, newError(StatusCancelled, "the loop over the stream's chunks stopped before its end")
			return
		}
		if err != nil {
			yield(nil, err)
		}
	}
	result = func() (*Response, error) { return resp, err }
	return chunks, result
}

func encodeRequest(req *Request) ([]byte, error) {
	if req == nil {
		return nil, newError(StatusInvalidArgument, "the request is nil")
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, newError(StatusInvalidArgument, "cannot encode the request: "+err.Error())
	}
	return body, nil
}

func decodeResponse(b []byte) (*Response, error) {
	r := &Response{Raw: b}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, newError(StatusInternal, "cannot decode the response: "+err.Error())
	}
	return r, nil
}
