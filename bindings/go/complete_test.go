package llmr

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestCompleteJSON(t *testing.T) {
	setup(t, openAI("ok"))
	out, err := CompleteJSON(context.Background(), []byte(`{"messages":[{"role":"user","content":"hello there"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		Object  string `json:"object"`
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Llmr struct {
			DeploymentID string `json:"deployment_id"`
		} `json:"llmr"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if resp.Object != "chat.completion" || resp.Choices[0].Message.Content != "echo: hello there" || resp.Llmr.DeploymentID != "ok" {
		t.Fatalf("unexpected response %s", out)
	}
}

func TestComplete(t *testing.T) {
	setup(t, openAI("ok"))
	resp, err := Complete(context.Background(), &Request{
		Messages: []Message{SystemMessage("Be brief."), UserMessage("hi there")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Text() != "echo: hi there" || resp.FinishReason() != "stop" {
		t.Fatalf("text %q, finish %q", resp.Text(), resp.FinishReason())
	}
	if resp.Message().Role != "assistant" {
		t.Errorf("role %q", resp.Message().Role)
	}
	if resp.Usage == nil || resp.Usage.TotalTokens == 0 {
		t.Errorf("usage %+v", resp.Usage)
	}
	m := resp.Llmr
	if m == nil || m.DeploymentID != "ok" || m.Provider != "openai" || m.Attempts != 1 || m.Latency() <= 0 {
		t.Errorf("llmr meta %+v", m)
	}
	if !json.Valid(resp.Raw) || !strings.Contains(string(resp.Raw), `"llmr"`) {
		t.Errorf("Raw %s", resp.Raw)
	}
}

func TestCompleteAnthropic(t *testing.T) {
	setup(t, anthropic("ok"))
	resp, err := Complete(context.Background(), user("bonjour"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Text() != "echo: bonjour" || resp.Llmr.Provider != "anthropic" {
		t.Fatalf("text %q, meta %+v", resp.Text(), resp.Llmr)
	}
}

func TestCompleteMock(t *testing.T) {
	setup(t, mock("m", obj{"mock_response": "Hello from a mock."}))
	resp, err := Complete(context.Background(), user("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Text() != "Hello from a mock." || resp.Llmr.DeploymentID != "m" {
		t.Fatalf("text %q, meta %+v", resp.Text(), resp.Llmr)
	}
}

// TestRequestFields checks what reaches the provider for every typed field and Extra.
func TestRequestFields(t *testing.T) {
	setup(t, openAI("ok"))
	temp := 0.0 // a real temperature, not "unset"
	_, err := Complete(context.Background(), &Request{
		Model:       "auto",
		Messages:    []Message{UserMessageParts(TextPart("look"), ImagePart("https://example.com/cat.png"))},
		Temperature: &temp,
		MaxTokens:   77,
		Stop:        []string{"END"},
		ResponseFormat: &ResponseFormat{Type: "json_schema", JSONSchema: &JSONSchema{
			Name: "answer", Schema: obj{"type": "object"}, Strict: true,
		}},
		Timeout: 5 * time.Second,
		Extra:   map[string]any{"seed": 7, "top_p": 0.5, "max_tokens": 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	sent := upstreamBodies(t, "ok")[0]
	want := obj{
		"temperature":     0.0,
		"max_tokens":      77.0, // the typed field wins over Extra
		"stop":            []any{"END"},
		"seed":            7.0,
		"top_p":           0.5,
		"response_format": obj{"type": "json_schema", "json_schema": obj{"name": "answer", "schema": obj{"type": "object"}, "strict": true}},
	}
	for k, v := range want {
		if !reflect.DeepEqual(sent[k], v) {
			t.Errorf("%s: sent %#v, want %#v", k, sent[k], v)
		}
	}
	if _, ok := sent["timeout"]; ok {
		t.Error("timeout is llmr's own and must not reach the provider")
	}
	content := sent["messages"].([]any)[0].(obj)["content"].([]any)
	if len(content) != 2 || content[1].(obj)["image_url"].(obj)["url"] != "https://example.com/cat.png" {
		t.Errorf("content parts sent as %#v", content)
	}
}

func TestRequestJSONRoundTrip(t *testing.T) {
	temp := 0.3
	in := Request{
		Model:       "auto-large",
		Messages:    []Message{UserMessage("hi"), {Role: "assistant", ToolCalls: []ToolCall{{ID: "c1", Function: FunctionCall{Name: "f", Arguments: "{}"}}}}, ToolResultMessage("c1", "42")},
		Tools:       []Tool{FunctionTool("f", "does f", obj{"type": "object"})},
		ToolChoice:  ToolChoiceFunction("f"),
		Timeout:     1500 * time.Millisecond,
		Temperature: &temp,
		Extra:       map[string]any{"user": "u1"},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var fields obj
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	msgs := fields["messages"].([]any)
	if c, ok := msgs[1].(obj)["content"]; !ok || c != nil {
		t.Errorf("assistant tool-call turn: content %#v, want null", c)
	}
	if tc := msgs[1].(obj)["tool_calls"].([]any)[0].(obj); tc["type"] != "function" {
		t.Errorf("tool call type %v", tc["type"])
	}
	if fields["timeout"] != 1.5 || fields["user"] != "u1" {
		t.Errorf("timeout %v, user %v", fields["timeout"], fields["user"])
	}
	var out Request
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Timeout != in.Timeout || out.Extra["user"] != "u1" || len(out.Extra) != 1 || out.Messages[2].ToolCallID != "c1" || *out.Temperature != temp {
		t.Errorf("round trip: %+v", out)
	}
}

// TestToolRoundTrip offers a tool, gets a call, answers it and gets the final answer.
func TestToolRoundTrip(t *testing.T) {
	setup(t, openAI("ok"))
	weather := FunctionTool("get_weather", "The weather in a city.", obj{
		"type":       "object",
		"properties": obj{"city": obj{"type": "string"}},
		"required":   []string{"city"},
	})
	req := &Request{
		Messages:   []Message{UserMessage("weather in Paris?")},
		Tools:      []Tool{weather},
		ToolChoice: "auto",
	}
	resp, err := Complete(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	calls := resp.ToolCalls()
	if resp.FinishReason() != "tool_calls" || len(calls) != 1 || calls[0].Function.Name != "get_weather" || calls[0].ID == "" {
		t.Fatalf("finish %q, calls %+v", resp.FinishReason(), calls)
	}
	var args struct{ City string }
	if err := calls[0].DecodeArguments(&args); err != nil || args.City != "Paris" {
		t.Fatalf("arguments %q: %v", calls[0].Function.Arguments, err)
	}

	req.Messages = append(req.Messages, resp.Message(), ToolResultMessage(calls[0].ID, `{"temp_c": 21}`))
	final, err := Complete(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if final.Text() != "echo: weather in Paris?" || len(final.ToolCalls()) != 0 {
		t.Fatalf("final answer %q, calls %+v", final.Text(), final.ToolCalls())
	}

	// What the provider got the second time: the assistant's call and the tool's answer.
	sent := upstreamBodies(t, "ok")
	if len(sent) != 2 {
		t.Fatalf("%d upstream requests", len(sent))
	}
	msgs := sent[1]["messages"].([]any)
	asst, tool := msgs[1].(obj), msgs[2].(obj)
	tc := asst["tool_calls"].([]any)[0].(obj)
	if asst["role"] != "assistant" || tc["id"] != calls[0].ID || tc["function"].(obj)["name"] != "get_weather" {
		t.Errorf("assistant turn sent as %#v", asst)
	}
	if tool["role"] != "tool" || tool["tool_call_id"] != calls[0].ID || tool["content"] != `{"temp_c": 21}` {
		t.Errorf("tool turn sent as %#v", tool)
	}
	if sent[0]["tool_choice"] != "auto" || sent[0]["tools"].([]any)[0].(obj)["function"].(obj)["name"] != "get_weather" {
		t.Errorf("tools sent as %#v / %#v", sent[0]["tools"], sent[0]["tool_choice"])
	}
}

func TestMockToolCalls(t *testing.T) {
	setup(t, mock("m", obj{"mock_tool_calls": []obj{
		{"name": "lookup", "arguments": obj{"q": "llmr"}},
		{"name": "fetch", "arguments": `{"url":"https://example.com"}`},
	}}))
	req := &Request{Messages: []Message{UserMessage("find it")}, Tools: []Tool{FunctionTool("lookup", "", nil), FunctionTool("fetch", "", nil)}}
	resp, err := Complete(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	calls := resp.ToolCalls()
	if len(calls) != 2 || calls[0].Function.Name != "lookup" || calls[1].Function.Arguments != `{"url":"https://example.com"}` {
		t.Fatalf("calls %+v", calls)
	}
	var a struct{ Q string }
	if err := calls[0].DecodeArguments(&a); err != nil || a.Q != "llmr" {
		t.Fatalf("arguments %q: %v", calls[0].Function.Arguments, err)
	}
}
