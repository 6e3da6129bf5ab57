package llmr

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// logSink collects what a logger got.
type logSink struct {
	mu   sync.Mutex
	msgs []logMsg
}

type logMsg struct {
	level int
	raw   string
	obj   map[string]any
}

func (s *logSink) logger(level int, msgJSON string) {
	var obj map[string]any
	_ = json.Unmarshal([]byte(msgJSON), &obj)
	s.mu.Lock()
	s.msgs = append(s.msgs, logMsg{level, msgJSON, obj})
	s.mu.Unlock()
}

func (s *logSink) all() []logMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]logMsg(nil), s.msgs...)
}

// wait returns the first message whose "msg" is msg, waiting up to 10 s for it.
func (s *logSink) wait(t *testing.T, msg string) logMsg {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, m := range s.all() {
			if m.obj["msg"] == msg {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q message within 10 s: %v", msg, s.all())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSetLoggerGetsEveryRequestOutcome(t *testing.T) {
	sink := &logSink{}
	if err := SetLoggerAt(LogDebug, sink.logger); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = SetLogger(nil) })
	const word = "PINEAPPLEPROMPT"
	setup(t, mock("a", obj{"mock_response": "echo " + word}), obj{"id": "broken", "provider": "OPENAI"})
	if m := sink.wait(t, "config entry skipped"); m.level != LogWarn {
		t.Errorf("skipped entry at level %d", m.level)
	}
	resp, err := Complete(context.Background(), user(word))
	if err != nil {
		t.Fatal(err)
	}
	m := sink.wait(t, "request completed")
	if m.level != LogDebug || m.obj["level"] != "debug" {
		t.Errorf("level %d, %v", m.level, m.obj["level"])
	}
	if m.obj["deployment_id"] != "a" || m.obj["status"] != "ok" || m.obj["attempts"] != 1.0 {
		t.Errorf("outcome line: %s", m.raw)
	}
	if got := m.obj["prompt_tokens"]; got != float64(resp.Usage.PromptTokens) {
		t.Errorf("prompt_tokens %v, usage %d", got, resp.Usage.PromptTokens)
	}
	for _, m := range sink.all() {
		if strings.Contains(m.raw, word) {
			t.Errorf("message content in a log line: %s", m.raw)
		}
	}

	// Back to stderr: nothing more arrives.
	if err := SetLogger(nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // a message under way may still arrive
	n := len(sink.all())
	if _, err := Complete(context.Background(), user("hi")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if len(sink.all()) != n {
		t.Errorf("a removed logger got %d more messages", len(sink.all())-n)
	}
}

func TestAPanickingLoggerLosesOnlyItsMessage(t *testing.T) {
	calls := make(chan struct{}, 100)
	if err := SetLoggerAt(LogDebug, func(int, string) {
		select {
		case calls <- struct{}{}:
		default:
		}
		panic("a bug in the user's logger")
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = SetLogger(nil) })
	setup(t, mock("a", nil))
	for i := 0; i < 3; i++ {
		if _, err := Complete(context.Background(), user("hi")); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-calls:
	case <-time.After(10 * time.Second):
		t.Fatal("the logger was never called")
	}
	// Replaced by a working one, logging goes on.
	sink := &logSink{}
	if err := SetLoggerAt(LogDebug, sink.logger); err != nil {
		t.Fatal(err)
	}
	if _, err := Complete(context.Background(), user("hi")); err != nil {
		t.Fatal(err)
	}
	sink.wait(t, "request completed")
}

func TestSetLoggerRefusesABadLevel(t *testing.T) {
	for _, l := range []int{-1, 6} {
		err := SetLoggerAt(l, func(int, string) {})
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("level %d: %v", l, err)
		}
	}
}

func TestMetrics(t *testing.T) {
	setup(t, mock("m", obj{"input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002}))
	resp, err := Complete(context.Background(), user("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Llmr.CostUSD == nil || *resp.Llmr.CostUSD <= 0 {
		t.Fatalf("llmr.cost_usd: %s", resp.Raw)
	}
	text, err := Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^llmr_requests_total\{deployment_id="m",[^}]*status="ok"\} 1$`).MatchString(text) {
		t.Errorf("no request counted:\n%s", text)
	}
	if !strings.Contains(text, "# TYPE gen_ai_client_operation_duration_seconds histogram\n") {
		t.Errorf("no duration histogram:\n%s", text)
	}
	_ = Shutdown()
	text, err = Metrics()
	if err != nil || !strings.Contains(text, "\nllmr_initialized 0\n") {
		t.Errorf("without a router: %v\n%s", err, text)
	}
}
