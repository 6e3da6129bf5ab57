//go:build llmr_static

package llmr

// With -tags llmr_static: libllmr.a from the checkout is linked into the program, which then
// needs no libllmr.so at run time.

// #cgo CFLAGS: -I${SRCDIR}/../../include
// #cgo LDFLAGS: ${SRCDIR}/../../target/release/libllmr.a -lpthread -ldl -lm
import "C"
