// Command demo is an offline tour of the Go binding of llmr.
//
//	make build                      # in the repository root: libllmr.so
//	cd bindings/go && go run ./examples/demo
//	go run ./examples/demo -config ../../examples/mock_config.json
//
// The config uses MOCK deployments, which answer in-process: no network, no API key. Swap them
// for real providers ("provider": "OPENAI", "api_key": "os.environ/OPENAI_API_KEY", …) and the
// program runs unchanged.
//
// What it shows, in order:
//  1. Version, Init, RouterInfo;
//  2. a streamed answer printed as it arrives (StreamSeq), then the assembled response's
//     finish reason, usage and routing metadata;
//  3. an error handled: a prompt too large for every context window is ErrContextOverflow;
//     the program trims it and asks again with Complete;
//  4. a deadline: a context that expires cancels the stream in the library;
//  5. Stats and Shutdown.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	llmr "github.com/llmr/llmr/bindings/go"
)

// The same deployments as examples/mock_config.json: a small and a large context window, so
// that "auto-large" exists as the context-window fallback of "auto".
const mockConfig = `{
  "global_llm_configs": [
    {"id": "mock-small", "provider": "MOCK", "model_name": "mock-small", "max_input_tokens": 2000,
     "rpm": 600, "tpm": 200000,
     "litellm_params": {"mock_response": "llmr routes each request to the best deployment of its group, retries and fails over when a provider errors, cools down deployments that keep failing, and falls back to a larger context window when a prompt does not fit.",
                        "mock_chunk_delay_ms": 30}},
    {"id": "mock-large", "provider": "MOCK", "model_name": "mock-large", "max_input_tokens": 8000,
     "rpm": 600, "tpm": 200000,
     "litellm_params": {"mock_response": "llmr routes each request to the best deployment of its group, retries and fails over when a provider errors, cools down deployments that keep failing, and falls back to a larger context window when a prompt does not fit.",
                        "mock_chunk_delay_ms": 30}}
  ],
  "router_settings": {"routing_strategy": "usage-based-routing", "num_retries": 2,
                      "allowed_fails": 3, "cooldown_time": 30, "timeout": 60}
}`

func main() {
	configPath := flag.String("config", "", "a config JSON file (default: the built-in MOCK config)")
	flag.Parse()
	if err := run(*configPath); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(configPath string) error {
	// 1. Version, init, router info. ----------------------------------------------------------
	fmt.Println("llmr", llmr.Version())
	config := mockConfig
	if configPath != "" {
		b, err := os.ReadFile(configPath)
		if err != nil {
			return err
		}
		config = string(b)
	}
	if err := llmr.Init(config); err != nil {
		return err // an *llmr.Error matching llmr.ErrConfig, with the reason
	}
	defer llmr.Shutdown()
	fmt.Printf("%d deployment(s) ready\n", llmr.ModelCount())
	info, err := llmr.RouterInfo()
	if err != nil {
		return err
	}
	fmt.Println("router info:", info)

	ctx := context.Background()
	req := &llmr.Request{
		Messages: []llmr.Message{
			llmr.SystemMessage("You are a concise assistant."),
			llmr.UserMessage("What does llmr do?"),
		},
		MaxTokens: 200,
	}

	// 2. Stream an answer. ---------------------------------------------------------------------
	fmt.Print("\nstreaming: ")
	chunks, result := llmr.StreamSeq(ctx, req)
	n := 0
	for chunk, err := range chunks {
		if err != nil {
			return err
		}
		fmt.Print(chunk.Text())
		n++
	}
	resp, err := result()
	if err != nil {
		return err
	}
	fmt.Printf("\n%d chunks, finish_reason %s, usage %+v\n", n, resp.FinishReason(), *resp.Usage)
	fmt.Printf("answered by %s (%s) after %d attempt(s) in %v\n",
		resp.Llmr.DeploymentID, resp.Llmr.Provider, resp.Llmr.Attempts, resp.Llmr.Latency().Round(time.Millisecond))

	// 3. An error, handled. --------------------------------------------------------------------
	// About 10,000 tokens: more than every deployment's window (2,000 and 8,000). llmr first
	// tries the larger window, then reports a context overflow, distinct from every other
	// failure, so the caller knows what to do about it: shorten the prompt.
	big := &llmr.Request{Messages: []llmr.Message{llmr.UserMessage(strings.Repeat("x", 40000))}}
	fmt.Println("\nsending a prompt of about 10000 tokens...")
	_, err = llmr.Complete(ctx, big)
	var e *llmr.Error
	switch {
	case errors.Is(err, llmr.ErrContextOverflow) && errors.As(err, &e):
		fmt.Printf("handled %s (code %d): %s\n", e.Status, e.Code, e.Message)
		fmt.Println("retrying with the prompt trimmed...")
		resp, err := llmr.Complete(ctx, req)
		if err != nil {
			return err
		}
		fmt.Printf("%s\n(from %s)\n", resp.Text(), resp.Llmr.DeploymentID)
	case err != nil:
		return err
	default:
		return errors.New("the oversized prompt was accepted")
	}

	// 4. A deadline. ---------------------------------------------------------------------------
	// The stream takes about a second; the context allows 200 ms. The request is cancelled in
	// the library and the error matches both llmr.ErrCancelled and context.DeadlineExceeded.
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	fmt.Print("\nstreaming with a 200 ms deadline: ")
	_, err = llmr.Stream(short, req, func(c *llmr.Chunk) error {
		fmt.Print(c.Text())
		return nil
	})
	fmt.Println()
	if !errors.Is(err, llmr.ErrCancelled) || !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("expected a cancellation by the deadline, got %v", err)
	}
	fmt.Println("stopped:", err)

	// 5. Live stats. --------------------------------------------------------------------------
	stats, err := llmr.Stats()
	if err != nil {
		return err
	}
	fmt.Println("\nstats:", stats)
	fmt.Println("\ndone")
	return nil
}
