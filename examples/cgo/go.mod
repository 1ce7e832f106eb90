module example.com/libguard/cgo

go 1.19
