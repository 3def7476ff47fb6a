package maps

import (
	"errors"

	"github.com/cilium/ebpf"
)

// PutIfChanged writes k=v unless m already holds exactly that; it reports
// whether it wrote.
func PutIfChanged[K, V comparable](m *ebpf.Map, k K, v V) (bool, error) {
	var have V
	if m.Lookup(k, &have) == nil && have == v {
		return false, nil
	}
	return true, m.Put(k, v)
}

// DeleteExcept removes every entry of m whose key is not in keep (or whose
// value differs from keep's, when values are comparable and differ) and
// returns the keys it removed.
func DeleteExcept[K, V comparable](m *ebpf.Map, keep map[K]V) ([]K, error) {
	var k K
	var v V
	var stale []K
	it := m.Iterate()
	for it.Next(&k, &v) {
		if want, ok := keep[k]; !ok || want != v {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	for _, k := range stale {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, err
		}
	}
	return stale, nil
}

// Sync makes m hold exactly want: stale and differing entries are removed,
// missing and differing ones written. It returns the keys it wrote and the
// keys it removed.
func Sync[K, V comparable](m *ebpf.Map, want map[K]V) (written, removed []K, err error) {
	if removed, err = DeleteExcept(m, want); err != nil {
		return nil, removed, err
	}
	for k, v := range want {
		changed, err := PutIfChanged(m, k, v)
		if err != nil {
			return written, removed, err
		}
		if changed {
			written = append(written, k)
		}
	}
	return written, removed, nil
}
