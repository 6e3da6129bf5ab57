package llmr

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Request is an OpenAI chat-completions request. Zero fields are left out of the JSON, so the
// router's and the deployment's defaults apply.
type Request struct {
	// Model is the group to route to: "" or "auto" (every deployment), or "auto-large".
	Model    string
	Messages []Message
	Tools    []Tool
	// ToolChoice is "auto", "none", "required", or ToolChoiceFunction(name).
	ToolChoice     any
	Temperature    *float64 // nil: the deployment's default (0 is a temperature)
	MaxTokens      int      // 0: the deployment's default
	Stop           []string
	ResponseFormat *ResponseFormat
	// Timeout overrides the router's timeout for this request (0: the router's). A context
	// deadline works too; this one is enforced by the library, which then reports ErrTimeout.
	Timeout time.Duration
	// Extra holds any other request field ("top_p", "seed", "user", …); it is merged into the
	// JSON. A typed field that is set wins over an Extra entry of the same name.
	Extra map[string]any
}

// requestWire is Request's JSON form, before Extra is merged.
type requestWire struct {
	Model          string          `json:"model,omitempty"`
	Messages       []Message       `json:"messages"`
	Tools          []Tool          `json:"tools,omitempty"`
	ToolChoice     any             `json:"tool_choice,omitempty"`
	Temperature    *float64        `json:"temperature,omitempty"`
	MaxTokens      int             `json:"max_tokens,omitempty"`
	Stop           []string        `json:"stop,omitempty"`
	ResponseFormat *ResponseFormat `json:"response_format,omitempty"`
	Timeout        float64         `json:"timeout,omitempty"`
}

var requestFields = []string{"model", "messages", "tools", "tool_choice", "temperature",
	"max_tokens", "stop", "response_format", "timeout"}

// MarshalJSON gives the request body the library takes.
func (r Request) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(requestWire{
		Model:          r.Model,
		Messages:       r.Messages,
		Tools:          r.Tools,
		ToolChoice:     r.ToolChoice,
		Temperature:    r.Temperature,
		MaxTokens:      r.MaxTokens,
		Stop:           r.Stop,
		ResponseFormat: r.ResponseFormat,
		Timeout:        r.Timeout.Seconds(),
	})
	if err != nil || len(r.Extra) == 0 {
		return b, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, err
	}
	for k, v := range r.Extra {
		if _, typed := fields[k]; typed {
			continue
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("llmr: Request.Extra[%q]: %w", k, err)
		}
		fields[k] = raw
	}
	return json.Marshal(fields)
}

// UnmarshalJSON reads a request body; fields without a typed home go to Extra.
func (r *Request) UnmarshalJSON(b []byte) error {
	var w requestWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return err
	}
	for _, k := range requestFields {
		delete(fields, k)
	}
	*r = Request{
		Model:          w.Model,
		Messages:       w.Messages,
		Tools:          w.Tools,
		ToolChoice:     w.ToolChoice,
		Temperature:    w.Temperature,
		MaxTokens:      w.MaxTokens,
		Stop:           w.Stop,
		ResponseFormat: w.ResponseFormat,
		Timeout:        time.Duration(w.Timeout * float64(time.Second)),
	}
	if len(fields) > 0 {
		r.Extra = make(map[string]any, len(fields))
		for k, raw := range fields {
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				return err
			}
			r.Extra[k] = v
		}
	}
	return nil
}

// ToolChoiceFunction is a ToolChoice that forces a call to the named function.
func ToolChoiceFunction(name string) any {
	return map[string]any{"type": "function", "function": map[string]string{"name": name}}
}

// ResponseFormat asks for JSON output: Type "json_object", or "json_schema" with JSONSchema.
type ResponseFormat struct {
	Type       string      `json:"type"`
	JSONSchema *JSONSchema `json:"json_schema,omitempty"`
}

// JSONSchema names the schema of a "json_schema" ResponseFormat.
type JSONSchema struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Schema      any    `json:"schema,omitempty"`
	Strict      bool   `json:"strict,omitempty"`
}

// Message is one turn of a conversation, in requests and in responses (so an answer can be
// appended to the history as it is).
type Message struct {
	Role string // "system", "user", "assistant" or "tool"
	// Content is the text. Parts, when not nil, is sent instead (text and images).
	Content string
	Parts   []ContentPart
	// ToolCalls are the calls an assistant turn asks for.
	ToolCalls []ToolCall
	// ToolCallID names the call a "tool" turn answers.
	ToolCallID string
	Name       string
	// Refusal is an assistant's refusal text, when the provider gives one.
	Refusal string
}

type messageWire struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCalls  []ToolCall      `json:"tool_calls,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`
	Name       string          `json:"name,omitempty"`
	Refusal    string          `json:"refusal,omitempty"`
}

// MarshalJSON sends Parts when set, else Content; an assistant turn with tool calls and no
// text gets "content": null, as OpenAI expects.
func (m Message) MarshalJSON() ([]byte, error) {
	w := messageWire{Role: m.Role, ToolCalls: m.ToolCalls, ToolCallID: m.ToolCallID, Name: m.Name, Refusal: m.Refusal}
	var err error
	switch {
	case m.Parts != nil:
		w.Content, err = json.Marshal(m.Parts)
	case m.Content == "" && len(m.ToolCalls) > 0:
		w.Content = json.RawMessage("null")
	default:
		w.Content, err = json.Marshal(m.Content)
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(w)
}

// UnmarshalJSON takes content as a string, an array of parts (into Parts) or null.
func (m *Message) UnmarshalJSON(b []byte) error {
	var w messageWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*m = Message{Role: w.Role, ToolCalls: w.ToolCalls, ToolCallID: w.ToolCallID, Name: w.Name, Refusal: w.Refusal}
	c := strings.TrimSpace(string(w.Content))
	switch {
	case c == "" || c == "null":
	case c[0] == '[':
		return json.Unmarshal(w.Content, &m.Parts)
	default:
		return json.Unmarshal(w.Content, &m.Content)
	}
	return nil
}

// SystemMessage is a "system" turn.
func SystemMessage(text string) Message { return Message{Role: "system", Content: text} }

// UserMessage is a "user" turn.
func UserMessage(text string) Message { return Message{Role: "user", Content: text} }

// UserMessageParts is a "user" turn made of parts (text and images).
func UserMessageParts(parts ...ContentPart) Message { return Message{Role: "user", Parts: parts} }

// AssistantMessage is an "assistant" turn.
func AssistantMessage(text string) Message { return Message{Role: "assistant", Content: text} }

// ToolResultMessage is a "tool" turn: the result of the call toolCallID.
func ToolResultMessage(toolCallID, content string) Message {
	return Message{Role: "tool", ToolCallID: toolCallID, Content: content}
}

// ContentPart is one part of a message's content: Type "text" with Text, or "image_url" with
// ImageURL.
type ContentPart struct {
	Type     string    `json:"type"`
	Text     string    `json:"text,omitempty"`
	ImageURL *ImageURL `json:"image_url,omitempty"`
}

// ImageURL is an image given by URL (or data: URL).
type ImageURL struct {
	URL    string `json:"url"`
	Detail string `json:"detail,omitempty"` // "auto", "low" or "high"
}

// TextPart is a text ContentPart.
func TextPart(text string) ContentPart { return ContentPart{Type: "text", Text: text} }

// ImagePart is an image ContentPart.
func ImagePart(url string) ContentPart {
	return ContentPart{Type: "image_url", ImageURL: &ImageURL{URL: url}}
}

// Tool is a tool the model may call. Type defaults to "function".
type Tool struct {
	Type     string   `json:"type"`
	Function Function `json:"function"`
}

// MarshalJSON fills in Type "function" when it is empty.
func (t Tool) MarshalJSON() ([]byte, error) {
	type plain Tool
	if t.Type == "" {
		t.Type = "function"
	}
	return json.Marshal(plain(t))
}

// Function describes a function tool: its name, what it does, and its parameters as a JSON
// Schema (any value that marshals to one: a map, a struct, a json.RawMessage).
type Function struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Parameters  any    `json:"parameters,omitempty"`
	Strict      bool   `json:"strict,omitempty"`
}

// FunctionTool is a function Tool.
func FunctionTool(name, description string, parameters any) Tool {
	return Tool{Type: "function", Function: Function{Name: name, Description: description, Parameters: parameters}}
}

// ToolCall is a call the model asks for; answer it with ToolResultMessage(call.ID, result).
type ToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function FunctionCall `json:"function"`
}

// MarshalJSON fills in Type "function" when it is empty.
func (tc ToolCall) MarshalJSON() ([]byte, error) {
	type plain ToolCall
	if tc.Type == "" {
		tc.Type = "function"
	}
	return json.Marshal(plain(tc))
}

// FunctionCall is the function a ToolCall calls; Arguments is JSON text.
type FunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// DecodeArguments unmarshals the call's JSON arguments into v.
func (tc ToolCall) DecodeArguments(v any) error {
	args := tc.Function.Arguments
	if strings.TrimSpace(args) == "" {
		args = "{}"
	}
	return json.Unmarshal([]byte(args), v)
}

// Response is a chat.completion.
type Response struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"`
	Created int64    `json:"created"`
	Model   string   `json:"model"`
	Choices []Choice `json:"choices"`
	Usage   *Usage   `json:"usage,omitempty"`
	// Llmr tells which deployment answered and what it took.
	Llmr *Meta `json:"llmr,omitempty"`
	// Raw is the response JSON as the library gave it, for fields without a typed home.
	Raw json.RawMessage `json:"-"`
}

// Choice is one answer of a Response.
type Choice struct {
	Index        int     `json:"index"`
	Message      Message `json:"message"`
	FinishReason string  `json:"finish_reason"` // "stop", "length", "tool_calls", …
}

// Usage counts tokens.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// Meta is what llmr adds to every answer: the deployment that answered and what it took.
type Meta struct {
	DeploymentID       string   `json:"deployment_id"`
	Provider           string   `json:"provider"`
	Attempts           int      `json:"attempts"`
	LatencyMS          float64  `json:"latency_ms"`
	TimeToFirstChunkMS float64  `json:"time_to_first_chunk_ms,omitempty"`
	Fallbacks          []string `json:"fallbacks,omitempty"`
	// CostUSD is what the answer cost in US dollars (its usage at the model's prices); nil when
	// the prices are unknown.
	CostUSD *float64 `json:"cost_usd,omitempty"`
}

// Latency is LatencyMS as a Duration.
func (m *Meta) Latency() time.Duration {
	return time.Duration(m.LatencyMS * float64(time.Millisecond))
}

// Message is the first choice's message (the zero Message when there is none), ready to be
// appended to the conversation.
func (r *Response) Message() Message {
	if len(r.Choices) == 0 {
		return Message{}
	}
	return r.Choices[0].Message
}

// Text is the first choice's text.
func (r *Response) Text() string { return r.Message().Content }

// ToolCalls are the first choice's tool calls.
func (r *Response) ToolCalls() []ToolCall { return r.Message().ToolCalls }

// FinishReason is the first choice's finish reason.
func (r *Response) FinishReason() string {
	if len(r.Choices) == 0 {
		return ""
	}
	return r.Choices[0].FinishReason
}

// Chunk is a chat.completion.chunk: a piece of a streamed answer. Only chunks that carry
// content or tool-call deltas are delivered.
type Chunk struct {
	ID      string        `json:"id"`
	Object  string        `json:"object"`
	Created int64         `json:"created"`
	Model   string        `json:"model"`
	Choices []ChunkChoice `json:"choices"`
	Usage   *Usage        `json:"usage,omitempty"`
	// Raw is the chunk JSON as the library gave it.
	Raw json.RawMessage `json:"-"`
}

// ChunkChoice is the delta of one choice.
type ChunkChoice struct {
	Index        int    `json:"index"`
	Delta        Delta  `json:"delta"`
	FinishReason string `json:"finish_reason"`
}

// Delta is what a chunk adds to a choice.
type Delta struct {
	Role             string          `json:"role,omitempty"`
	Content          string          `json:"content,omitempty"`
	ToolCalls        []ToolCallDelta `json:"tool_calls,omitempty"`
	ReasoningContent string          `json:"reasoning_content,omitempty"`
}

// ToolCallDelta is a piece of a tool call: the first piece of call Index carries its ID and
// name, later ones more of its Arguments.
type ToolCallDelta struct {
	Index    int          `json:"index"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function FunctionCall `json:"function"`
}

// Text is the text this chunk adds to the first choice.
func (c *Chunk) Text() string {
	if len(c.Choices) == 0 {
		return ""
	}
	return c.Choices[0].Delta.Content
}
