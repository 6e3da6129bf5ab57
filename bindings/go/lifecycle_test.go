package llmr

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	if v := Version(); !regexp.MustCompile(`^\d+\.\d+\.\d+`).MatchString(v) {
		t.Fatalf("Version() = %q", v)
	}
}

func TestStatusNamesAreTheLibrarys(t *testing.T) {
	for s := Status(-1); s <= 13; s++ {
		if got, want := s.String(), libraryStatusName(s); got != want {
			t.Errorf("Status(%d).String() = %q, llmr_status_name says %q", s, got, want)
		}
	}
}

func TestIsAutoMode(t *testing.T) {
	if !IsAutoMode(AutoModeID) || IsAutoMode(1) || IsAutoMode(-1) {
		t.Fatal("IsAutoMode: only 0 is Auto mode")
	}
}

func TestNotInitialized(t *testing.T) {
	if err := Shutdown(); err != nil {
		t.Fatal(err)
	}
	if IsInitialized() || ModelCount() != 0 {
		t.Fatal("initialised after Shutdown")
	}
	_, err := RouterInfo()
	wantStatus(t, err, ErrNotInitialized)
	_, err = Stats()
	wantStatus(t, err, ErrNotInitialized)
	_, err = CompleteJSON(context.Background(), []byte(`{"messages":[{"role":"user","content":"hi"}]}`))
	wantStatus(t, err, ErrNotInitialized)
	_, err = Stream(context.Background(), user("hi"), nil)
	wantStatus(t, err, ErrNotInitialized)
}

func TestInitShutdown(t *testing.T) {
	setup(t, mock("a", nil), mock("b", nil))
	if !IsInitialized() || ModelCount() != 2 {
		t.Fatalf("after Init: initialised %v, %d models", IsInitialized(), ModelCount())
	}

	// The router is process-wide: a second Init changes nothing.
	if err := Init(config(t, fastSettings, mock("c", nil))); err != nil {
		t.Fatalf("second Init: %v", err)
	}
	if ModelCount() != 2 {
		t.Fatalf("second Init changed the router: %d models", ModelCount())
	}

	info, err := RouterInfo()
	if err != nil || !strings.Contains(info, `"deployments"`) || !strings.Contains(info, `"a"`) {
		t.Fatalf("RouterInfo: %v %s", err, info)
	}
	stats, err := Stats()
	if err != nil || !strings.Contains(stats, `"in_flight"`) {
		t.Fatalf("Stats: %v %s", err, stats)
	}

	for range 2 { // idempotent
		if err := Shutdown(); err != nil {
			t.Fatal(err)
		}
		if IsInitialized() || ModelCount() != 0 {
			t.Fatal("still initialised after Shutdown")
		}
	}

	// Init works again, with the new config.
	if err := Init(config(t, fastSettings, mock("c", nil))); err != nil {
		t.Fatal(err)
	}
	if ModelCount() != 1 {
		t.Fatalf("re-Init: %d models", ModelCount())
	}
	if _, err := Complete(context.Background(), user("hi")); err != nil {
		t.Fatal(err)
	}
}

func TestRouterInfoHidesKeys(t *testing.T) {
	setup(t, openAI("ok"))
	info, err := RouterInfo()
	if err != nil {
		t.Fatal(err)
	}
	stats, err := Stats()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(info+stats, "sk-test-key") {
		t.Fatal("an API key in RouterInfo or Stats")
	}
}

func TestInitConfigErrors(t *testing.T) {
	if err := Shutdown(); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		config string
		want   error
	}{
		"not json":      {"{not json", ErrConfig},
		"no configs":    {`{"router_settings": {}}`, ErrConfig},
		"empty":         {`{"global_llm_configs": []}`, ErrConfig},
		"nothing valid": {`{"global_llm_configs": [{"id": 1, "provider": "OPENAI", "api_key": "sk-x"}]}`, ErrConfig},
		"bad settings":  {config(t, obj{"routing_strategy": "nope"}, mock("a", nil)), ErrConfig},
		"bad mock":      {config(t, fastSettings, mock("a", obj{"mock_delay_ms": "soon"})), ErrConfig},
		"NUL byte":      {"{\x00}", ErrInvalidArgument},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			err := Init(c.config)
			e := wantStatus(t, err, c.want)
			if e.Message == "" {
				t.Error("no message")
			}
			if IsInitialized() {
				t.Fatal("initialised by a bad config")
			}
		})
	}
}

func TestShutdownCancelsInFlight(t *testing.T) {
	setup(t, openAI("hang"))
	errc := make(chan error, 2)
	go func() {
		_, err := CompleteJSON(context.Background(), []byte(`{"messages":[{"role":"user","content":"hi"}]}`))
		errc <- err
	}()
	go func() {
		_, err := Stream(context.Background(), user("hi"), func(*Chunk) error { return nil })
		errc <- err
	}()
	eventually(t, 5*time.Second, "requests reach the stand-in", func() bool { return upstreamCount(t, "hang") == 2 })
	if err := Shutdown(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case err := <-errc:
			e := wantStatus(t, err, ErrCancelled)
			if errors.Is(err, context.Canceled) {
				t.Error("a cancellation by Shutdown matches context.Canceled")
			}
			if !strings.Contains(e.Message, "shutdown") {
				t.Errorf("message %q does not say shutdown", e.Message)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Shutdown left a request waiting")
		}
	}
}

// wantStatus checks that err is an *Error matching want, and returns it.
func wantStatus(t testing.TB, err error, want error) *Error {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %v does not match %v", err, want)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v is not an *llmr.Error", err, err)
	}
	if e.Code != int(e.Status) {
		t.Errorf("Code %d != Status %d", e.Code, e.Status)
	}
	return e
}
