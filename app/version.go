package app

import (
	"runtime"
	"runtime/debug"
)

// Version is payflow's version as the build recorded it (the module
// version, or the VCS pseudo-version `go build` stamps), "devel" when the
// build did not record one.
func Version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	return versionOf(info)
}

func versionOf(info *debug.BuildInfo) string {
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	return "devel"
}

// GoVersion is the Go release payflow was built with.
func GoVersion() string { return runtime.Version() }
