package llmr

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestUpstreamErrors: every status an upstream provider can cause, through the stand-in, for
// completions and streams, with the error JSON's fields.
func TestUpstreamErrors(t *testing.T) {
	cases := []struct {
		tenant  string
		want    error
		http    int
		timeout time.Duration
	}{
		{"overflow", ErrContextOverflow, 400, 0},
		{"e429", ErrRateLimited, 429, 0},
		{"e401", ErrAuth, 401, 0},
		{"e403", ErrAuth, 403, 0},
		{"e400", ErrBadRequest, 400, 0},
		{"e404", ErrBadRequest, 404, 0},
		{"policy", ErrContentPolicy, 400, 0},
		{"hang", ErrTimeout, 0, 300 * time.Millisecond},
		{"e500", ErrUpstream, 500, 0},
		{"e503", ErrUpstream, 503, 0},
		{"garbage", ErrUpstream, 0, 0},
	}
	for _, c := range cases {
		for _, stream := range []bool{false, true} {
			name := c.tenant + map[bool]string{false: "/complete", true: "/stream"}[stream]
			t.Run(name, func(t *testing.T) {
				setup(t, openAI(c.tenant))
				req := user("hi")
				req.Timeout = c.timeout
				var err error
				if stream {
					_, err = Stream(context.Background(), req, func(*Chunk) error { return nil })
				} else {
					_, err = Complete(context.Background(), req)
				}
				e := wantStatus(t, err, c.want)
				if c.http != 0 && e.HTTPStatus != c.http {
					t.Errorf("HTTPStatus %d, want %d", e.HTTPStatus, c.http)
				}
				if e.Provider != "openai" || e.DeploymentID != c.tenant || e.Attempts != 1 || e.Message == "" {
					t.Errorf("provider %q, deployment %q, attempts %d, message %q", e.Provider, e.DeploymentID, e.Attempts, e.Message)
				}
				if c.want == ErrRateLimited && e.RetryAfter != 2*time.Second {
					t.Errorf("RetryAfter %v, want the provider's 2s", e.RetryAfter)
				}
				if errors.Is(err, context.Canceled) || errors.Is(err, ErrCancelled) {
					t.Error("an upstream failure matches a cancellation")
				}
			})
		}
	}
}

func TestMidStreamError(t *testing.T) {
	setup(t, openAI("midstreamerror"))
	chunks := 0
	_, err := Stream(context.Background(), user("hi"), func(*Chunk) error { chunks++; return nil })
	wantStatus(t, err, ErrUpstream)
	if chunks == 0 {
		t.Error("the chunk before the error was not delivered")
	}
}

// TestMockErrors: MOCK deployments fail with any status named in mock_error.
func TestMockErrors(t *testing.T) {
	for _, want := range []error{ErrContextOverflow, ErrRateLimited, ErrAuth, ErrBadRequest, ErrContentPolicy, ErrTimeout, ErrUpstream} {
		name := want.(*sentinel).status.String()
		t.Run(name, func(t *testing.T) {
			setup(t, mock("m", obj{"mock_error": name}))
			_, err := Complete(context.Background(), user("hi"))
			e := wantStatus(t, err, want)
			if e.DeploymentID != "m" {
				t.Errorf("deployment %q", e.DeploymentID)
			}
		})
	}
	t.Run("retry_after", func(t *testing.T) {
		setup(t, mock("m", obj{"mock_error": obj{"http_status": 429, "message": "slow down", "retry_after": 3.5}}))
		_, err := Complete(context.Background(), user("hi"))
		e := wantStatus(t, err, ErrRateLimited)
		if e.RetryAfter != 3500*time.Millisecond || e.HTTPStatus != 429 || !strings.Contains(e.Message, "slow down") {
			t.Errorf("%+v", e)
		}
	})
}

// TestContextOverflowFallback: a prompt too big for the small window goes to auto-large; one
// too big for every window is a context overflow.
func TestContextOverflowFallback(t *testing.T) {
	small := mock("small", obj{"mock_response": "small"})
	small["max_input_tokens"] = 100
	large := mock("large", obj{"mock_response": "large"})
	large["max_input_tokens"] = 1000
	setup(t, small, large)
	resp, err := Complete(context.Background(), user(strings.Repeat("x", 2000)))
	if err != nil || resp.Llmr.DeploymentID != "large" {
		t.Fatalf("%v %+v", err, resp)
	}
	_, err = Complete(context.Background(), user(strings.Repeat("x", 20000)))
	wantStatus(t, err, ErrContextOverflow)
}

func TestInvalidRequests(t *testing.T) {
	setup(t, mock("m", nil))
	for name, body := range map[string]string{
		"not json":       `{"messages": [`,
		"no messages":    `{"model": "auto"}`,
		"empty messages": `{"messages": []}`,
		"wrong type":     `{"messages": "hi"}`,
		"no role":        `{"messages": [{"content": "hi"}]}`,
		"unknown group":  `{"model": "gpt-nope", "messages": [{"role": "user", "content": "hi"}]}`,
		"bad timeout":    `{"timeout": -1, "messages": [{"role": "user", "content": "hi"}]}`,
		"NUL byte":       "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\x00\"}]}",
		"empty":          ``,
		"not UTF-8":      "{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := CompleteJSON(context.Background(), []byte(body))
			e := wantStatus(t, err, ErrInvalidArgument)
			if e.Message == "" {
				t.Error("no message")
			}
			_, err = StreamJSON(context.Background(), []byte(body), func([]byte) error { return nil })
			wantStatus(t, err, ErrInvalidArgument)
		})
	}
	_, err := Complete(context.Background(), nil)
	wantStatus(t, err, ErrInvalidArgument)
	_, err = Complete(context.Background(), &Request{Messages: []Message{UserMessage("hi")}, Extra: map[string]any{"f": func() {}}})
	wantStatus(t, err, ErrInvalidArgument)
}

func TestErrorMatching(t *testing.T) {
	e := &Error{Status: StatusRateLimited, Code: 5, Message: "slow down", HTTPStatus: 429, Provider: "openai", DeploymentID: "1", RetryAfter: 2 * time.Second, Attempts: 2}
	var err error = e
	if !errors.Is(err, ErrRateLimited) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrCancelled) {
		t.Fatal("errors.Is matches the wrong sentinel")
	}
	wrapped := errors.Join(errors.New("while routing"), err)
	var got *Error
	if !errors.Is(wrapped, ErrRateLimited) || !errors.As(wrapped, &got) || got != e {
		t.Fatal("a wrapped *Error is not found")
	}
	if s := e.Error(); s != "llmr: rate_limited: slow down (http 429, provider openai, deployment 1, 2 attempt(s), retry after 2s)" {
		t.Errorf("Error() = %q", s)
	}
	if ErrRateLimited.Error() != "llmr: rate_limited" {
		t.Errorf("sentinel text %q", ErrRateLimited.Error())
	}
	if errors.Is(ErrRateLimited, ErrTimeout) {
		t.Error("sentinels match each other")
	}
}

func TestParseError(t *testing.T) {
	e := parseError(StatusContextOverflow, []byte(`{"error": {"status": "context_overflow", "code": 4, "message": "too long", "http_status": 400, "provider": "openai", "deployment_id": "7", "retry_after": 12.5, "attempts": 2}}`))
	want := Error{Status: StatusContextOverflow, Code: 4, Message: "too long", HTTPStatus: 400, Provider: "openai", DeploymentID: "7", RetryAfter: 12500 * time.Millisecond, Attempts: 2}
	if *e != want {
		t.Errorf("parsed %+v", *e)
	}
	if e := parseError(StatusUpstream, []byte("not json")); e.Message != "not json" || e.Status != StatusUpstream || e.Code != 10 {
		t.Errorf("garbage: %+v", *e)
	}
	if e := parseError(StatusInternal, nil); e.Message == "" || !errors.Is(e, ErrInternal) {
		t.Errorf("empty: %+v", *e)
	}
}

// TestExportedCallbacksRecover: the callbacks the library calls never let a panic through
// (here: a handle that is not one).
func TestExportedCallbacksRecover(t *testing.T) {
	if stop := llmrGoOnChunk(nil, 0); stop == 0 {
		t.Error("on_chunk with a bad handle did not ask to stop")
	}
	llmrGoOnDone(11, nil, 0) // must not panic
}
