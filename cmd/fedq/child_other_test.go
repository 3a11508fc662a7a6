//go:build !linux

package main

import "os/exec"

// dieWithParent does nothing here: only Linux has a parent-death signal. Tests still
// kill their children in cleanups.
func dieWithParent(*exec.Cmd) {}
