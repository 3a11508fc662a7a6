package coordinator_test

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes a child process of a test get SIGKILL when the test binary dies,
// even by a panic or go test's timeout (when no cleanup runs): an orphan would keep the
// test's output pipe open and go test waiting.
func dieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
