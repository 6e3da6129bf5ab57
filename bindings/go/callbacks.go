package llmr

// The callbacks the library calls on its callback thread ("llmr-callbacks"), one at a time
// for every request of the process. They copy what they are given (the strings are valid only
// during the call), hand it to the waiting goroutine and return at once: they never run user
// code and never block. A panic never unwinds into the library: it is recovered here.

/*
#include <stdint.h>
#include <string.h>
#include <llmr.h>
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

//export llmrGoOnChunk
func llmrGoOnChunk(chunkJSON *C.char, handle C.uintptr_t) (stop C.int32_t) {
	defer func() {
		if recover() != nil {
			stop = 1 // whatever went wrong, this stream cannot be served any more
		}
	}()
	c := cgo.Handle(handle).Value().(*call)
	if c.stopped.Load() {
		return 1 // the caller is gone: the library stops the stream
	}
	if c.keepChunks && chunkJSON != nil {
		c.push(C.GoBytes(unsafe.Pointer(chunkJSON), C.int(C.strlen(chunkJSON))))
	}
	return 0
}

//export llmrGoOnDone
func llmrGoOnDone(status C.llmr_status, json *C.char, handle C.uintptr_t) {
	defer func() {
		_ = recover() // an invalid handle: nobody is waiting for this request
	}()
	h := cgo.Handle(handle)
	c := h.Value().(*call)
	h.Delete() // on_done runs exactly once per request: the handle's one release
	defer close(c.done)
	c.status = Status(status)
	if json != nil {
		c.json = C.GoBytes(unsafe.Pointer(json), C.int(C.strlen(json)))
	}
}
