package llmr

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestStreamJSON(t *testing.T) {
	setup(t, openAI("ok"))
	var text strings.Builder
	n := 0
	out, err := StreamJSON(context.Background(),
		[]byte(`{"messages":[{"role":"user","content":"one two three four five"}]}`),
		func(chunk []byte) error {
			var c struct {
				Object  string `json:"object"`
				Choices []struct {
					Delta struct {
						Content string `json:"content"`
					} `json:"delta"`
				} `json:"choices"`
			}
			if err := json.Unmarshal(chunk, &c); err != nil || c.Object != "chat.completion.chunk" {
				t.Errorf("chunk %s: %v", chunk, err)
			}
			text.WriteString(c.Choices[0].Delta.Content)
			n++
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := decodeResponse(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := "echo: one two three four five"; resp.Text() != want || text.String() != want {
		t.Fatalf("assembled %q, chunks %q", resp.Text(), text.String())
	}
	if n < 6 {
		t.Errorf("%d chunks", n)
	}
	if resp.Object != "chat.completion" || resp.FinishReason() != "stop" || resp.Usage == nil || resp.Llmr == nil {
		t.Errorf("assembled response %s", out)
	}
}

func TestStream(t *testing.T) {
	answer := "llmr routes each request to the best deployment of its group and streams the answer back."
	setup(t, mock("m", obj{"mock_response": answer, "mock_chunk_delay_ms": 1}))
	var text strings.Builder
	var chunks []*Chunk
	resp, err := Stream(context.Background(), user("what does llmr do?"), func(c *Chunk) error {
		chunks = append(chunks, c)
		text.WriteString(c.Text())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if text.String() != answer || resp.Text() != answer {
		t.Fatalf("chunks %q, assembled %q", text.String(), resp.Text())
	}
	if len(chunks) != len(strings.Fields(answer)) {
		t.Errorf("%d chunks for %d words", len(chunks), len(strings.Fields(answer)))
	}
	if chunks[0].Object != "chat.completion.chunk" || chunks[0].ID == "" || !json.Valid(chunks[0].Raw) {
		t.Errorf("first chunk %+v", chunks[0])
	}
	if resp.Usage == nil || resp.Llmr == nil || resp.Llmr.DeploymentID != "m" || resp.FinishReason() != "stop" {
		t.Errorf("response %s", resp.Raw)
	}
}

func TestStreamAnthropic(t *testing.T) {
	setup(t, anthropic("ok"))
	var text strings.Builder
	resp, err := Stream(context.Background(), user("a b c"), func(c *Chunk) error {
		text.WriteString(c.Text())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if text.String() != "echo: a b c" || resp.Text() != text.String() {
		t.Fatalf("chunks %q, assembled %q", text.String(), resp.Text())
	}
}

func TestStreamNilCallback(t *testing.T) {
	setup(t, mock("m", obj{"mock_response": "just the result"}))
	resp, err := Stream(context.Background(), user("hi"), nil)
	if err != nil || resp.Text() != "just the result" {
		t.Fatalf("%v %+v", err, resp)
	}
	out, err := StreamJSON(context.Background(), []byte(`{"messages":[{"role":"user","content":"hi"}]}`), nil)
	if err != nil || !strings.Contains(string(out), "just the result") {
		t.Fatalf("%v %s", err, out)
	}
}

func TestStreamToolCalls(t *testing.T) {
	setup(t, openAI("ok"))
	req := &Request{
		Messages: []Message{UserMessage("weather?")},
		Tools:    []Tool{FunctionTool("get_weather", "", obj{"type": "object"})},
	}
	var args strings.Builder
	var name string
	resp, err := Stream(context.Background(), req, func(c *Chunk) error {
		for _, d := range c.Choices[0].Delta.ToolCalls {
			if d.Function.Name != "" {
				name = d.Function.Name
			}
			args.WriteString(d.Function.Arguments)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	calls := resp.ToolCalls()
	if len(calls) != 1 || name != "get_weather" || calls[0].Function.Name != name || calls[0].Function.Arguments != args.String() || resp.FinishReason() != "tool_calls" {
		t.Fatalf("deltas %q %q, assembled %+v, finish %q", name, args.String(), calls, resp.FinishReason())
	}
	var a struct{ City string }
	if err := calls[0].DecodeArguments(&a); err != nil || a.City != "Paris" {
		t.Fatalf("arguments %q: %v", calls[0].Function.Arguments, err)
	}
}

func TestStreamSeq(t *testing.T) {
	answer := "one two three four five six"
	setup(t, mock("m", obj{"mock_response": answer}))

	chunks, result := StreamSeq(context.Background(), user("count"))
	if _, err := result(); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("result before the loop: %v", err)
	}
	var text strings.Builder
	for c, err := range chunks {
		if err != nil {
			t.Fatal(err)
		}
		text.WriteString(c.Text())
	}
	resp, err := result()
	if err != nil || resp.Text() != answer || text.String() != answer {
		t.Fatalf("%v: assembled %q, chunks %q", err, resp.Text(), text.String())
	}
	for _, err := range chunks {
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("second range: %v", err)
		}
	}
}

func TestStreamSeqBreak(t *testing.T) {
	setup(t, mock("m", obj{"mock_response": strings.Repeat("word ", 200), "mock_chunk_delay_ms": 5}))
	chunks, result := StreamSeq(context.Background(), user("talk"))
	n := 0
	start := time.Now()
	for _, err := range chunks {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 3 {
			break
		}
	}
	if time.Since(start) > time.Second {
		t.Errorf("breaking out took %v", time.Since(start))
	}
	if _, err := result(); !errors.Is(err, ErrCancelled) {
		t.Fatalf("result after break: %v", err)
	}
	eventually(t, 2*time.Second, "the stream ends in the library", func() bool { return inFlight(t) == 0 })
}

func TestStreamSeqError(t *testing.T) {
	setup(t, openAI("e401"))
	chunks, result := StreamSeq(context.Background(), user("hi"))
	errs := 0
	for c, err := range chunks {
		if c != nil {
			t.Errorf("chunk %+v", c)
		}
		wantStatus(t, err, ErrAuth)
		errs++
	}
	if errs != 1 {
		t.Errorf("%d errors yielded", errs)
	}
	if _, err := result(); !errors.Is(err, ErrAuth) {
		t.Errorf("result: %v", err)
	}
}

// TestStreamCallbackErrorStops: the callback's error stops the stream and is returned as is.
func TestStreamCallbackErrorStops(t *testing.T) {
	setup(t, mock("m", obj{"mock_response": strings.Repeat("word ", 100), "mock_chunk_delay_ms": 20}))
	stop := errors.New("enough")
	calls := 0
	start := time.Now()
	_, err := Stream(context.Background(), user("talk"), func(*Chunk) error {
		if calls++; calls == 3 {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Fatalf("error %v, want the callback's", err)
	}
	if calls != 3 {
		t.Errorf("callback called %d times after it said stop", calls)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("stopping took %v", d)
	}
	eventually(t, 2*time.Second, "the stream ends in the library", func() bool { return inFlight(t) == 0 })
}

// TestStreamCallbackPanic: a panic in the callback propagates to the caller and the request
// is cancelled in the library.
func TestStreamCallbackPanic(t *testing.T) {
	setup(t, mock("m", obj{"mock_response": strings.Repeat("word ", 100), "mock_chunk_delay_ms": 20}))
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v", r)
			}
		}()
		_, _ = Stream(context.Background(), user("talk"), func(*Chunk) error { panic("boom") })
	}()
	eventually(t, 2*time.Second, "the stream ends in the library", func() bool { return inFlight(t) == 0 })
	if _, err := Complete(context.Background(), user("still there?")); err != nil {
		t.Fatal(err)
	}
}

// TestSlowConsumerDoesNotBlockOthers: a stream whose callback is slow holds up only itself;
// the library's callback thread keeps serving every other request.
func TestSlowConsumerDoesNotBlockOthers(t *testing.T) {
	setup(t, mock("m", obj{"mock_response": strings.Repeat("word ", 40)}))
	slowDone := make(chan error, 1)
	firstChunk := make(chan struct{})
	go func() {
		n := 0
		resp, err := Stream(context.Background(), user("talk"), func(c *Chunk) error {
			if n++; n == 1 {
				close(firstChunk)
			}
			time.Sleep(50 * time.Millisecond) // a slow consumer: 40 chunks, two seconds in all
			return nil
		})
		if err == nil && n != 40 {
			err = errors.New("missing chunks")
		}
		if err == nil && resp.Text() != strings.Repeat("word ", 40) {
			err = errors.New("wrong text")
		}
		slowDone <- err
	}()
	<-firstChunk
	for i := range 20 {
		start := time.Now()
		if _, err := Complete(context.Background(), user("quick")); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 750*time.Millisecond {
			t.Fatalf("completion %d took %v while a slow stream was being consumed", i, d)
		}
	}
	select {
	case err := <-slowDone:
		t.Fatalf("the slow stream ended before the quick completions: %v", err)
	default:
	}
	if err := <-slowDone; err != nil {
		t.Fatal(err)
	}
}

// TestCallsFromCallback: the chunk callback runs on the caller's goroutine, so it may call
// llmr again, even a blocking completion.
func TestCallsFromCallback(t *testing.T) {
	setup(t, mock("m", obj{"mock_response": "a b c"}))
	inner := 0
	_, err := Stream(context.Background(), user("hi"), func(*Chunk) error {
		resp, err := Complete(context.Background(), user("nested"))
		if err == nil && resp.Text() == "a b c" {
			inner++
		}
		_, err = Stats()
		return err
	})
	if err != nil || inner != 3 {
		t.Fatalf("%v, %d nested completions", err, inner)
	}
}
