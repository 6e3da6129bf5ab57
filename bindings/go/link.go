//go:build !llmr_pkgconfig && !llmr_static

package llmr

// Default linking: against the library `make build` leaves in the checkout's target/release,
// with an rpath so that programs and tests run without LD_LIBRARY_PATH. Flags in CGO_LDFLAGS
// come before these, so CGO_LDFLAGS="-L/opt/llmr/lib -Wl,-rpath,/opt/llmr/lib" picks another
// copy. The build tags llmr_pkgconfig (an installed llmr.pc) and llmr_static (libllmr.a) are
// the alternatives; see README.md.

// #cgo CFLAGS: -I${SRCDIR}/../../include
// #cgo LDFLAGS: -L${SRCDIR}/../../target/release -lllmr -Wl,-rpath,${SRCDIR}/../../target/release
import "C"
