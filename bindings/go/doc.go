// Package llmr is the Go binding of llmr, an in-process LLM router with a C ABI: one
// process-wide router, initialised once from a JSON config, that load-balances OpenAI-shaped
// chat completions over many provider deployments, keeps to their rpm/tpm, cools failing ones
// down, retries and fails over, falls back to a larger context window when a prompt does not
// fit, and tells a context overflow apart from every other error.
//
// # Setup
//
// Init takes the config JSON; Shutdown drops the router (Init works again afterwards):
//
//	err := llmr.Init(`{
//	  "global_llm_configs": [
//	    {"id": 1, "provider": "OPENAI", "model_name": "gpt-4o-mini",
//	     "api_key": "os.environ/OPENAI_API_KEY", "rpm": 500, "tpm": 100000},
//	    {"id": 2, "provider": "MOCK", "model_name": "mock",
//	     "litellm_params": {"mock_response": "Hello!"}}
//	  ],
//	  "router_settings": {"routing_strategy": "usage-based-routing", "num_retries": 3,
//	                      "allowed_fails": 3, "cooldown_time": 60, "retry_after": 5, "timeout": 600}
//	}`)
//	defer llmr.Shutdown()
//
// Every usable deployment joins the group "auto"; those with a larger context window than the
// smallest are also in "auto-large", the context-window fallback of "auto". The provider MOCK
// answers in-process (litellm_params mock_response, mock_tool_calls, mock_error,
// mock_delay_ms, mock_chunk_delay_ms), for demos and tests without network.
//
// The router is process-wide: Init on an initialised library returns nil and changes nothing.
//
// # Requests
//
// Complete, Stream and StreamSeq take a *Request and give a *Response; CompleteJSON and
// StreamJSON take and give the OpenAI JSON as it is:
//
//	resp, err := llmr.Complete(ctx, &llmr.Request{
//		Messages: []llmr.Message{llmr.UserMessage("What does llmr do?")},
//	})
//	fmt.Println(resp.Text(), resp.Llmr.DeploymentID)
//
//	chunks, result := llmr.StreamSeq(ctx, req)
//	for chunk, err := range chunks {
//		if err != nil {
//			return err
//		}
//		fmt.Print(chunk.Text())
//	}
//	resp, err := result()
//
// Tool calls come back in Response.ToolCalls(); append resp.Message() and one
// ToolResultMessage per call to the conversation and ask again.
//
// # Errors
//
// Every failure is an *Error (Status, Code, Message, HTTPStatus, Provider, DeploymentID,
// RetryAfter, Attempts). Match it by kind with the sentinels, one per status:
//
//	switch {
//	case errors.Is(err, llmr.ErrContextOverflow):
//		// shorten the conversation
//	case errors.Is(err, llmr.ErrRateLimited):
//		var e *llmr.Error
//		errors.As(err, &e)
//		time.Sleep(e.RetryAfter)
//	}
//
// # Cancellation and concurrency
//
// Requests run in the library, asynchronously: the calling goroutine waits parked, as on a
// channel receive, and no other goroutine and no OS thread is held per request, so thousands
// may be in flight from as many goroutines. When a request's context is
// cancelled or its deadline passes, the request is cancelled in the library (its upstream call
// is dropped at once) and the call returns an error for which both errors.Is(err,
// llmr.ErrCancelled) and errors.Is(err, ctx.Err()) hold. Shutdown cancels every request in
// flight.
//
// Stream chunks are handed to the caller's callback (or loop body) on the calling goroutine,
// in order. The library's callbacks all run on one thread of its own ("llmr-callbacks"); the
// binding only copies the data there and never runs user code on it, so a slow consumer delays
// only its own stream.
//
// All functions are safe for concurrent use.
//
// # Linking
//
// By default the package links libllmr.so from the checkout's target/release (built by
// `make build`) with an rpath to it. Build with -tags llmr_pkgconfig to use the copy `make
// install` put under PREFIX (through pkg-config llmr), or -tags llmr_static to link libllmr.a
// into the program. See README.md.
package llmr
