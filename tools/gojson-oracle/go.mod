module the0k8s/gojson-oracle

// the0 runtime's go line (runtime/go.mod), so GODEBUG defaults are its too.
go 1.24.1
