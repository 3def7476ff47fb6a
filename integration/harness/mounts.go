package harness

// MountsUnder lists the mount points at or below dir, deepest first, for
// suites that mount things of their own (a runtime's shm and netns mounts).
func MountsUnder(dir string) ([]string, error) { return mountsUnder(dir) }
