package plugin

import (
	"io"
	"os"
)

// maxConfig bounds what reconcile reads from stdin: a network config.
const maxConfig = 1 << 20

func readAll(f *os.File) ([]byte, error) {
	return io.ReadAll(io.LimitReader(f, maxConfig))
}
