package llmr

// The test harness: a loopback provider stand-in (target/release/llmr-standin, built by
// `make build`) started once for the package, and helpers that (re)initialise the
// process-wide router per test. Tests never run in parallel: the router is one per process.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// standinURL is the stand-in's http://127.0.0.1:PORT.
var standinURL string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if os.Getenv("LLMR_LOG") == "" {
		os.Setenv("LLMR_LOG", "error") // the config tests make the library warn on purpose
	}
	bin := os.Getenv("LLMR_STANDIN")
	if bin == "" {
		bin = filepath.Join("..", "..", "target", "release", "llmr-standin")
	}
	cmd := exec.Command(bin)
	stdin, err := cmd.StdinPipe() // the stand-in exits when its stdin closes
	if err != nil {
		fmt.Fprintln(os.Stderr, "llmr tests:", err)
		return 1
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "llmr tests:", err)
		return 1
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "llmr tests: cannot start the provider stand-in %s: %v\n(run `make build` in the repository root first)\n", bin, err)
		return 1
	}
	defer func() {
		stdin.Close()
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()

	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		if s.Scan() {
			line <- s.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-line:
		url, ok := strings.CutPrefix(l, "LISTENING ")
		if !ok {
			fmt.Fprintf(os.Stderr, "llmr tests: the stand-in said %q\n", l)
			return 1
		}
		standinURL = url
	case <-time.After(10 * time.Second):
		fmt.Fprintln(os.Stderr, "llmr tests: the stand-in did not start within 10 s")
		return 1
	}

	code := m.Run()
	_ = Shutdown()
	return code
}

// obj is a JSON object under construction.
type obj = map[string]any

// openAI is a deployment on the stand-in, OpenAI wire format; the tenant's name selects its
// behaviour ("ok", "e429", "hang", "slow-200", …; a label after '-' keeps tenants apart).
func openAI(tenant string) obj {
	return obj{
		"id":         tenant,
		"provider":   "OPENAI",
		"model_name": "gpt-4o-mini",
		"api_key":    "sk-test-key",
		"api_base":   standinURL + "/" + tenant + "/v1",
	}
}

// anthropic is a deployment on the stand-in, Anthropic wire format.
func anthropic(tenant string) obj {
	return obj{
		"id":         "anthropic-" + tenant,
		"provider":   "ANTHROPIC",
		"model_name": "claude-3-5-haiku-latest",
		"api_key":    "sk-ant-test-key",
		"api_base":   standinURL + "/" + tenant,
	}
}

// mock is an in-process MOCK deployment with these litellm_params.
func mock(id string, params obj) obj {
	return obj{"id": id, "provider": "MOCK", "model_name": "mock-" + id, "litellm_params": params}
}

// fastSettings fail fast: no retries, no waiting.
var fastSettings = obj{"num_retries": 0, "retry_after": 0, "allowed_fails": 100, "cooldown_time": 1, "timeout": 30}

func config(t testing.TB, settings obj, deployments ...obj) string {
	t.Helper()
	b, err := json.Marshal(obj{"global_llm_configs": deployments, "router_settings": settings})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// setup starts the test on a fresh router over these deployments (fastSettings) and a reset
// stand-in; the router is shut down when the test ends.
func setup(t testing.TB, deployments ...obj) {
	t.Helper()
	setupWith(t, fastSettings, deployments...)
}

func setupWith(t testing.TB, settings obj, deployments ...obj) {
	t.Helper()
	if err := Shutdown(); err != nil {
		t.Fatal(err)
	}
	control(t, "POST", "/_reset", "")
	if err := Init(config(t, settings, deployments...)); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { _ = Shutdown() })
}

// control calls one of the stand-in's control endpoints and returns its JSON answer.
func control(t testing.TB, method, path, body string) obj {
	t.Helper()
	req, err := http.NewRequest(method, standinURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("stand-in %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out obj
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("stand-in %s %s: %d %v %v", method, path, resp.StatusCode, out, err)
	}
	return out
}

// upstreamCount is how many requests the tenant received.
func upstreamCount(t testing.TB, tenant string) int {
	t.Helper()
	return int(control(t, "GET", "/_count/"+tenant, "")["count"].(float64))
}

// inFlight is the library's requests in flight, summed over deployments (from Stats).
func inFlight(t testing.TB) int {
	t.Helper()
	s, err := Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	var stats struct {
		Deployments []struct {
			InFlight int `json:"in_flight"`
		} `json:"deployments"`
	}
	if err := json.Unmarshal([]byte(s), &stats); err != nil {
		t.Fatalf("Stats JSON: %v\n%s", err, s)
	}
	n := 0
	for _, d := range stats.Deployments {
		n += d.InFlight
	}
	return n
}

// eventually waits up to d for cond.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func user(text string) *Request {
	return &Request{Messages: []Message{UserMessage(text)}}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// upstreamBodies are the JSON bodies the tenant received, oldest first.
func upstreamBodies(t testing.TB, tenant string) []obj {
	t.Helper()
	resp, err := http.Get(standinURL + "/_requests/" + tenant)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var recs []struct {
		Body obj `json:"body"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil {
		t.Fatal(err)
	}
	out := make([]obj, len(recs))
	for i, r := range recs {
		out[i] = r.Body
	}
	return out
}
