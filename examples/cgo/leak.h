/* C code of the cgo example: what libguard sees in a Go program is C code like this. */
#ifndef LEAK_H
#define LEAK_H

#include <stddef.h>

/* Allocate blocks buffers of block_bytes each and never free them. Returns the bytes leaked. */
size_t leak_request_cache(int blocks, size_t block_bytes);

#endif
