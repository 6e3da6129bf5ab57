package llmr

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestReloadBeforeInit(t *testing.T) {
	if err := Shutdown(); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, Reload(config(t, fastSettings, mock("a", nil))), ErrNotInitialized)
	if IsInitialized() {
		t.Fatal("Reload initialised the library")
	}
}

func TestReloadSwapsTheConfigInPlace(t *testing.T) {
	setup(t, mock("old", obj{"mock_response": "old answer", "mock_delay_ms": 800}))

	// A request in flight when the config changes finishes on the old one.
	type outcome struct {
		resp *Response
		err  error
	}
	done := make(chan outcome, 1)
	go func() {
		resp, err := Complete(context.Background(), user("slow"))
		done <- outcome{resp, err}
	}()
	eventually(t, 5*time.Second, "the request is in flight", func() bool { return inFlight(t) == 1 })

	if err := Reload(config(t, fastSettings, mock("new", obj{"mock_response": "new answer"}), mock("also", nil))); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if ModelCount() != 2 {
		t.Fatalf("after Reload: %d models", ModelCount())
	}
	resp, err := Complete(context.Background(), user("hi"))
	if err != nil || (resp.Llmr.DeploymentID != "new" && resp.Llmr.DeploymentID != "also") {
		t.Fatalf("after Reload: %v %+v", err, resp)
	}
	select {
	case o := <-done:
		if o.err != nil || o.resp.Text() != "old answer" || o.resp.Llmr.DeploymentID != "old" {
			t.Fatalf("the in-flight request: %v %+v", o.err, o.resp)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the in-flight request did not finish")
	}

	// A bad config changes nothing.
	before, err := RouterInfo()
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, Reload(`{"global_llm_configs": []}`), ErrConfig)
	wantStatus(t, Reload("{not json"), ErrConfig)
	wantStatus(t, Reload("{\x00}"), ErrInvalidArgument)
	after, err := RouterInfo()
	if err != nil || after != before {
		t.Fatalf("a failed Reload changed the router: %v\n%s\n%s", err, before, after)
	}
	if !strings.Contains(after, `"new"`) || strings.Contains(after, `"old"`) {
		t.Fatalf("RouterInfo after Reload: %s", after)
	}
}
