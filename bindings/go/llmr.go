package llmr

/*
#include <stdlib.h>
#include <string.h>
#include <llmr.h>
*/
import "C"

import (
	"bytes"
	"strings"
	"unsafe"
)

// AutoModeID is the LLM config id that means Auto mode (LLMR_AUTO_MODE_ID).
const AutoModeID = 0

// Version is the version of the linked library, e.g. "0.1.0".
func Version() string {
	return C.GoString(C.llmr_version())
}

// Init initialises the process-wide router from a config JSON (see the package docs for its
// shape). On an initialised library it returns nil and changes nothing: call Shutdown first
// to start over with another config. An unusable config gives an error matching ErrConfig;
// entries that cannot be used are skipped with a logged warning.
func Init(config string) error {
	if strings.IndexByte(config, 0) >= 0 {
		return newError(StatusInvalidArgument, "the config contains a NUL byte")
	}
	cs := C.CString(config)
	defer C.free(unsafe.Pointer(cs))
	var errOut *C.char
	st := Status(C.llmr_init(cs, &errOut))
	detail := takeBytes(errOut)
	if st == StatusOK {
		return nil
	}
	return parseError(st, detail)
}

// Reload replaces the deployments and settings of the running router with those of a new
// config, atomically. Requests in flight finish on the config they started with; deployments
// whose id is in both configs keep their usage this minute, cooldowns, latency history and
// counters; the others vanish or start fresh. On an error nothing changes: ErrNotInitialized
// before Init (or after Shutdown), ErrConfig when the config is unusable.
func Reload(config string) error {
	if strings.IndexByte(config, 0) >= 0 {
		return newError(StatusInvalidArgument, "the config contains a NUL byte")
	}
	cs := C.CString(config)
	defer C.free(unsafe.Pointer(cs))
	var errOut *C.char
	st := Status(C.llmr_reload(cs, &errOut))
	detail := takeBytes(errOut)
	if st == StatusOK {
		return nil
	}
	return parseError(st, detail)
}

// Shutdown drops the router. Requests in flight are cancelled: they return errors matching
// ErrCancelled. Init works again afterwards. Calling it when not initialised is fine.
func Shutdown() error {
	if st := Status(C.llmr_shutdown()); st != StatusOK {
		return newError(st, "llmr_shutdown failed")
	}
	return nil
}

// IsInitialized reports whether Init has succeeded and no Shutdown followed.
func IsInitialized() bool {
	return bool(C.llmr_is_initialized())
}

// ModelCount is the number of deployments built from the config (not counting the
// auto-large copies); 0 when not initialised.
func ModelCount() int {
	return int(C.llmr_model_count())
}

// IsAutoMode reports whether an app's LLM config id means Auto mode (true for AutoModeID).
func IsAutoMode(llmConfigID int64) bool {
	return bool(C.llmr_is_auto_mode(C.int64_t(llmConfigID)))
}

// RouterInfo is the static view of the router as JSON: deployments (id, provider, model,
// api_base, rpm, tpm, max_input_tokens, groups), routing_strategy, router_settings,
// context_window_fallbacks and profile. It never holds an API key.
func RouterInfo() (string, error) {
	var out *C.char
	st := Status(C.llmr_router_info(&out))
	return result(st, takeBytes(out))
}

// Stats is the live view as JSON: per deployment, requests, successes, failures by status,
// in_flight, requests and tokens this minute, latency, time to first chunk, cooldown.
func Stats() (string, error) {
	var out *C.char
	st := Status(C.llmr_stats(&out))
	return result(st, takeBytes(out))
}

func result(st Status, text []byte) (string, error) {
	if st != StatusOK {
		return "", parseError(st, text)
	}
	return string(text), nil
}

// takeBytes copies a string the library returned through an out-parameter and frees it.
func takeBytes(p *C.char) []byte {
	if p == nil {
		return nil
	}
	defer C.llmr_string_free(p)
	return C.GoBytes(unsafe.Pointer(p), C.int(C.strlen(p)))
}

// cRequest copies a request into C memory, NUL-terminated; the caller frees it with C.free.
// JSON never holds a raw NUL byte, and C would cut the string there: such a request is refused.
func cRequest(request []byte) (*C.char, error) {
	if bytes.IndexByte(request, 0) >= 0 {
		return nil, newError(StatusInvalidArgument, "the request contains a NUL byte")
	}
	p := (*C.char)(C.malloc(C.size_t(len(request) + 1)))
	buf := unsafe.Slice((*byte)(unsafe.Pointer(p)), len(request)+1)
	copy(buf, request)
	buf[len(request)] = 0
	return p, nil
}

// libraryStatusName is llmr_status_name, for the test that Status.String agrees with it.
func libraryStatusName(s Status) string {
	return C.GoString(C.llmr_status_name(C.llmr_status(s)))
}
