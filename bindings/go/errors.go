package llmr

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Status is the outcome of a call: one of the llmr_status values of the C ABI. The numbers are
// stable and never reused.
type Status int32

// The statuses, with the values of llmr.h.
const (
	StatusOK              Status = 0  // success
	StatusInvalidArgument Status = 1  // malformed or schema-violating request, NUL byte, …
	StatusConfig          Status = 2  // Init: the config is unusable
	StatusNotInitialized  Status = 3  // called before Init (or after Shutdown)
	StatusContextOverflow Status = 4  // the prompt fits no context window, fallbacks included
	StatusRateLimited     Status = 5  // upstream 429 after retries, or every deployment cooling down
	StatusAuth            Status = 6  // upstream 401/403
	StatusBadRequest      Status = 7  // any other upstream 4xx
	StatusContentPolicy   Status = 8  // the provider refused the content
	StatusTimeout         Status = 9  // the request (or a stream's idle gap) ran past its timeout
	StatusUpstream        Status = 10 // 5xx, connection failure, malformed or truncated response
	StatusCancelled       Status = 11 // cancelled: by ctx, by a stream callback, or by Shutdown
	StatusInternal        Status = 12 // a bug in llmr (a caught panic)
)

var statusNames = [...]string{
	StatusOK:              "ok",
	StatusInvalidArgument: "invalid_argument",
	StatusConfig:          "config",
	StatusNotInitialized:  "not_initialized",
	StatusContextOverflow: "context_overflow",
	StatusRateLimited:     "rate_limited",
	StatusAuth:            "auth",
	StatusBadRequest:      "bad_request",
	StatusContentPolicy:   "content_policy",
	StatusTimeout:         "timeout",
	StatusUpstream:        "upstream",
	StatusCancelled:       "cancelled",
	StatusInternal:        "internal",
}

// String is the ABI's snake_case name of the status ("context_overflow"), as
// llmr_status_name gives it; "unknown" for a value that is not a status.
func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "unknown"
}

// sentinel is the type of the Err* values: one per status, matched by errors.Is.
type sentinel struct{ status Status }

func (s *sentinel) Error() string { return "llmr: " + s.status.String() }

// Sentinel errors, one per status. errors.Is(err, ErrRateLimited) is true when err is (or
// wraps) an *Error with that status.
var (
	ErrInvalidArgument error = &sentinel{StatusInvalidArgument}
	ErrConfig          error = &sentinel{StatusConfig}
	ErrNotInitialized  error = &sentinel{StatusNotInitialized}
	ErrContextOverflow error = &sentinel{StatusContextOverflow}
	ErrRateLimited     error = &sentinel{StatusRateLimited}
	ErrAuth            error = &sentinel{StatusAuth}
	ErrBadRequest      error = &sentinel{StatusBadRequest}
	ErrContentPolicy   error = &sentinel{StatusContentPolicy}
	ErrTimeout         error = &sentinel{StatusTimeout}
	ErrUpstream        error = &sentinel{StatusUpstream}
	ErrCancelled       error = &sentinel{StatusCancelled}
	ErrInternal        error = &sentinel{StatusInternal}
)

// Error is every failure llmr reports: the error JSON of the C ABI as a Go value. Fields that
// do not apply are zero.
//
// Match it by kind with errors.Is (errors.Is(err, llmr.ErrContextOverflow)) and read its
// fields with errors.As. An error caused by the caller's context also unwraps to the context's
// error: errors.Is(err, context.Canceled) or context.DeadlineExceeded holds as well as
// errors.Is(err, llmr.ErrCancelled).
type Error struct {
	Status       Status        // the kind of failure
	Code         int           // the numeric status, int(Status)
	Message      string        // what went wrong, for people
	HTTPStatus   int           // the upstream HTTP status, if any
	Provider     string        // the provider prefix of the deployment that failed ("openai")
	DeploymentID string        // the id of that deployment in the config
	RetryAfter   time.Duration // when to come back (rate limits, cooldowns)
	Attempts     int           // upstream attempts made, retries and failovers included

	cause error // the context error behind a cancellation, if any
}

// Error formats the error as "llmr: <status>: <message>" with the details that apply.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("llmr: ")
	b.WriteString(e.Status.String())
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	var details []string
	if e.HTTPStatus != 0 {
		details = append(details, fmt.Sprintf("http %d", e.HTTPStatus))
	}
	if e.Provider != "" {
		details = append(details, "provider "+e.Provider)
	}
	if e.DeploymentID != "" {
		details = append(details, "deployment "+e.DeploymentID)
	}
	if e.Attempts != 0 {
		details = append(details, fmt.Sprintf("%d attempt(s)", e.Attempts))
	}
	if e.RetryAfter != 0 {
		details = append(details, "retry after "+e.RetryAfter.String())
	}
	if e.cause != nil {
		details = append(details, e.cause.Error())
	}
	if len(details) > 0 {
		b.WriteString(" (")
		b.WriteString(strings.Join(details, ", "))
		b.WriteString(")")
	}
	return b.String()
}

// Is reports whether target is the sentinel of e's status (ErrTimeout for StatusTimeout, …).
func (e *Error) Is(target error) bool {
	s, ok := target.(*sentinel)
	return ok && s.status == e.Status
}

// Unwrap returns the context error that caused a cancellation, or nil.
func (e *Error) Unwrap() error { return e.cause }

// newError builds an error that did not come from the library's JSON.
func newError(status Status, message string) *Error {
	return &Error{Status: status, Code: int(status), Message: message}
}

// errorJSON is the error JSON of the ABI.
type errorJSON struct {
	Error struct {
		Status       string   `json:"status"`
		Code         *int     `json:"code"`
		Message      string   `json:"message"`
		HTTPStatus   int      `json:"http_status"`
		Provider     string   `json:"provider"`
		DeploymentID string   `json:"deployment_id"`
		RetryAfter   *float64 `json:"retry_after"`
		Attempts     int      `json:"attempts"`
	} `json:"error"`
}

// parseError turns the status a call returned and the error JSON it gave back into an *Error.
// The returned status is authoritative; text that is not the expected JSON becomes the message.
func parseError(status Status, text []byte) *Error {
	e := newError(status, "")
	var j errorJSON
	if len(text) == 0 {
		e.Message = "no error detail was given"
		return e
	}
	if err := json.Unmarshal(text, &j); err != nil || (j.Error.Message == "" && j.Error.Status == "") {
		e.Message = string(text)
		return e
	}
	e.Message = j.Error.Message
	e.HTTPStatus = j.Error.HTTPStatus
	e.Provider = j.Error.Provider
	e.DeploymentID = j.Error.DeploymentID
	e.Attempts = j.Error.Attempts
	if r := j.Error.RetryAfter; r != nil && *r > 0 {
		e.RetryAfter = time.Duration(*r * float64(time.Second))
	}
	return e
}
