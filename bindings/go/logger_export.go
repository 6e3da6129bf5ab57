package llmr

// The logger callback the library calls on its logger thread ("llmr-logger"). A panic never
// unwinds into the library: it is recovered here.

/*
#include <stdint.h>
*/
import "C"

import "runtime/cgo"

//export llmrGoOnLog
func llmrGoOnLog(level C.int32_t, messageJSON *C.char, handle C.uintptr_t) {
	defer func() {
		// A panic in the user's function, or a handle deleted by SetLogger while this message
		// was on its way: the message is lost, nothing else.
		_ = recover()
	}()
	f := cgo.Handle(handle).Value().(func(int, string))
	f(int(level), C.GoString(messageJSON))
}
