package llmr

/*
#include <stdint.h>
#include <llmr.h>

// The Go callback of logger_export.go, as cgo exports it.
extern void llmrGoOnLog(int32_t level, char *message_json, uintptr_t handle);

// An adapter with the exact type of llmr_log_cb; user_data carries a cgo.Handle.
static void llmr_go_log(int32_t level, const char *message_json, void *user_data) {
	llmrGoOnLog(level, (char *)message_json, (uintptr_t)user_data);
}

static llmr_status llmr_go_set_logger(int32_t max_level, uintptr_t handle) {
	return llmr_set_logger(handle == 0 ? NULL : llmr_go_log, max_level, (void *)handle);
}
*/
import "C"

import (
	"runtime/cgo"
	"sync"
)

// Log levels of the library's messages (the level argument of a logger, and SetLoggerAt's
// maxLevel).
const (
	LogError = 1
	LogWarn  = 2
	LogInfo  = 3
	LogDebug = 4
	LogTrace = 5
)

var (
	loggerMu sync.Mutex
	// loggerHandle holds the installed function; 0 when logs go to stderr.
	loggerHandle cgo.Handle
)

// SetLogger sends the library's log messages to f instead of stderr, up to the level the
// environment variable LLMR_LOG names (warn when unset); SetLogger(nil) goes back to stderr.
// See SetLoggerAt.
func SetLogger(f func(level int, msgJSON string)) error {
	return SetLoggerAt(0, f)
}

// SetLoggerAt sends the library's log messages up to maxLevel (LogError … LogTrace; 0 means
// LLMR_LOG's level) to f; with f nil, back to stderr. It may be called before Init and stays
// in force across Shutdown.
//
// Each message is one JSON object ({"ts_ms", "level", "msg", …fields}); none holds an API
// key or message content (content only at LogTrace with router_settings.log_content). Every
// request's outcome is a LogDebug message: deployment, attempts, fallbacks, status, latency,
// time to first chunk, tokens, cost.
//
// f runs on the library's logger thread, one message at a time and in order, never on the
// goroutine that logged; it may block (later messages wait, requests do not: when 4096 are
// waiting, new ones are dropped and counted) and may call any function of this package. A
// panic in f is recovered and the message is lost. A message being delivered while SetLoggerAt
// replaces f may still reach the previous f.
func SetLoggerAt(maxLevel int, f func(level int, msgJSON string)) error {
	if maxLevel < 0 || maxLevel > LogTrace {
		return newError(StatusInvalidArgument, "the log level must be 0 (LLMR_LOG's) or 1 to 5")
	}
	loggerMu.Lock()
	defer loggerMu.Unlock()
	var h cgo.Handle
	if f != nil {
		h = cgo.NewHandle(f)
	}
	if st := Status(C.llmr_go_set_logger(C.int32_t(maxLevel), C.uintptr_t(h))); st != StatusOK {
		if h != 0 {
			h.Delete()
		}
		return newError(st, "llmr_set_logger failed")
	}
	// A message still on its way to the old function finds its handle gone and is dropped.
	if loggerHandle != 0 {
		loggerHandle.Delete()
	}
	loggerHandle = h
	return nil
}

// Metrics is the router's metrics in the Prometheus text exposition format (requests by
// deployment and status, retries, fallbacks, cooldowns, in flight, tokens, cost, latency and
// time-to-first-chunk histograms); it works before Init too. Serve it on a /metrics endpoint.
func Metrics() (string, error) {
	var out *C.char
	st := Status(C.llmr_metrics(&out))
	return result(st, takeBytes(out))
}
