package ship_test

import "syscall"

const sigterm = syscall.SIGTERM
