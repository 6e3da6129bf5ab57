//go:build llmr_pkgconfig && !llmr_static

package llmr

// With -tags llmr_pkgconfig: the header and library that `make install` put under PREFIX,
// found through pkg-config (set PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig for a non-standard
// PREFIX, and LD_LIBRARY_PATH or an rpath for the run time linker if PREFIX/lib is not in its path).

// #cgo pkg-config: llmr
import "C"
