package llmr_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	llmr "github.com/llmr/llmr/bindings/go"
)

// A MOCK deployment answers in-process: no network, no API key.
const exampleConfig = `{"global_llm_configs": [{"id": "m", "provider": "MOCK", "model_name": "mock",
  "max_input_tokens": 1000, "litellm_params": {"mock_response": "Hello from llmr."}}]}`

func ExampleComplete() {
	llmr.Shutdown() // (the tests around this example use other configs)
	if err := llmr.Init(exampleConfig); err != nil {
		panic(err)
	}
	defer llmr.Shutdown()

	resp, err := llmr.Complete(context.Background(), &llmr.Request{
		Messages: []llmr.Message{llmr.UserMessage("Hi!")},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(resp.Text())
	fmt.Println("answered by", resp.Llmr.DeploymentID)
	// Output:
	// Hello from llmr.
	// answered by m
}

func ExampleStreamSeq() {
	llmr.Shutdown()
	if err := llmr.Init(exampleConfig); err != nil {
		panic(err)
	}
	defer llmr.Shutdown()

	chunks, result := llmr.StreamSeq(context.Background(), &llmr.Request{
		Messages: []llmr.Message{llmr.UserMessage("Hi!")},
	})
	for chunk, err := range chunks {
		if err != nil {
			panic(err)
		}
		fmt.Printf("%q\n", chunk.Text())
	}
	resp, err := result()
	if err != nil {
		panic(err)
	}
	fmt.Println(resp.FinishReason(), resp.Text())
	// Output:
	// "Hello "
	// "from "
	// "llmr."
	// stop Hello from llmr.
}

func ExampleError() {
	llmr.Shutdown()
	if err := llmr.Init(exampleConfig); err != nil {
		panic(err)
	}
	defer llmr.Shutdown()

	// About 5,000 tokens: more than the deployment's window of 1,000.
	_, err := llmr.Complete(context.Background(), &llmr.Request{
		Messages: []llmr.Message{llmr.UserMessage(strings.Repeat("x", 20000))},
	})
	var e *llmr.Error
	if errors.Is(err, llmr.ErrContextOverflow) && errors.As(err, &e) {
		fmt.Println("too long:", e.Status, e.Code)
	}
	// Output:
	// too long: context_overflow 4
}
