package main

import (
	"errors"
	"log/slog"

	"github.com/braid-cni/braid/core/cnierr"
	"github.com/braid-cni/braid/core/logging"
	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/store"
)

// session is one CNI call's hold on the node: config, logger, the locked
// store and the loaded datapath. Close releases them all.
type session struct {
	conf  *NetConf
	log   *slog.Logger
	store *store.Store
	dp    *datapath
	done  []func()
}

func openSession(stdin []byte, verb string) (*session, error) {
	conf, err := parseConfig(stdin)
	if err != nil {
		return nil, err
	}
	log, closeLog := logging.New(conf.LogFile, conf.Level(), pluginName)
	s := &session{conf: conf, log: log.With("verb", verb), done: []func(){closeLog}}
	if s.store, err = plugin.OpenStore(conf.Common); err != nil {
		s.Close()
		return nil, err
	}
	s.done = append(s.done, func() { s.store.Close() })
	// An ADD on a node never initialized fails before the datapath mounts
	// a bpffs that nothing would unmount.
	if verb == "ADD" {
		if err := s.store.View(func(tx *store.Tx) error { _, err := tx.Node(); return err }); errors.Is(err, store.ErrNotInitialized) {
			s.Close()
			return nil, cnierr.NotAvailable("%v (stateDir %s)", err, conf.StateDir)
		}
	}
	if s.dp, err = openDatapath(conf.BPFRoot); err != nil {
		s.Close()
		return nil, err
	}
	s.done = append(s.done, s.dp.Close)
	return s, nil
}

func (s *session) Close() {
	for i := len(s.done) - 1; i >= 0; i-- {
		s.done[i]()
	}
}
