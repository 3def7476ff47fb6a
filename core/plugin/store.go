package plugin

import (
	"errors"

	"github.com/braid-cni/braid/core/cnierr"
	"github.com/braid-cni/braid/core/config"
	"github.com/braid-cni/braid/core/store"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

// OpenStore opens the node store as a CNI call does: waiting lockTimeout
// for the lock, fsyncing only with storeFsync.
func OpenStore(c config.Common) (*store.Store, error) {
	return store.OpenWith(c.StateDir, store.Options{Timeout: c.Timeout(), NoSync: !c.StoreFsync})
}

// StoreError gives the store's typed errors their CNI codes, wherever they
// sit in err's chain: a locked store is 11 (try again later), a corrupt or
// unreadable one 5 (I/O). The message is err's, so it keeps the context the
// verb added; the cause stays reachable with errors.Is and errors.As. Other
// errors are returned as they are.
func StoreError(err error) error {
	var locked *store.LockedError
	var corrupt *store.CorruptError
	var ioErr *store.IOError
	switch {
	case errors.As(err, &locked):
		return cnierr.WithCode(types.ErrTryAgainLater, err)
	case errors.As(err, &corrupt), errors.As(err, &ioErr):
		return cnierr.WithCode(types.ErrIOFailure, err)
	}
	return err
}

// storeErrors applies StoreError to what every CNI verb of funcs returns.
func storeErrors(funcs skel.CNIFuncs) skel.CNIFuncs {
	wrap := func(f func(*skel.CmdArgs) error) func(*skel.CmdArgs) error {
		if f == nil {
			return nil
		}
		return func(args *skel.CmdArgs) error { return StoreError(f(args)) }
	}
	return skel.CNIFuncs{Add: wrap(funcs.Add), Del: wrap(funcs.Del), Check: wrap(funcs.Check),
		GC: wrap(funcs.GC), Status: wrap(funcs.Status)}
}
