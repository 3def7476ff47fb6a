package kit

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Table is one table of a report, for the terminal and for BENCHMARKS.md.
type Table struct {
	Title  string
	Header []string
	Rows   [][]string
}

// Text renders t aligned for a terminal.
func (t Table) Text() string {
	var b strings.Builder
	b.WriteString(t.Title + "\n")
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, strings.Join(t.Header, "\t")+"\t")
	for _, row := range t.Rows {
		fmt.Fprintln(w, strings.Join(row, "\t")+"\t")
	}
	w.Flush()
	return b.String() + "\n"
}

// Markdown renders t under a heading of the given level.
func (t Table) Markdown(level int) string {
	var b strings.Builder
	b.WriteString(strings.Repeat("#", level) + " " + t.Title + "\n\n")
	b.WriteString("| " + strings.Join(t.Header, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat(" --- |", len(t.Header)) + "\n")
	for _, row := range t.Rows {
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}
	return b.String() + "\n"
}

// PutSection writes md into the Markdown file at path between the markers
// of section name, replacing what was there; a file without them gets the
// section appended. Everything else in the file is kept, so each benchmark
// owns its section of BENCHMARKS.md.
func PutSection(path, name, md string) error {
	begin, end := "<!-- "+name+": begin -->", "<!-- "+name+": end -->"
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	section := begin + "\n" + md + end + "\n"
	s := string(old)
	if i, j := strings.Index(s, begin), strings.Index(s, end); i >= 0 && j > i {
		s = s[:i] + section + strings.TrimPrefix(s[j+len(end):], "\n")
	} else {
		if s != "" && !strings.HasSuffix(s, "\n\n") {
			s = strings.TrimRight(s, "\n") + "\n\n"
		}
		s += section
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

// Pick maps xs through f.
func Pick[T any](xs []T, f func(T) float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// Median of v; 0 for none.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Mean of v; 0 for none.
func Mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

// Join renders v with f, comma separated (every run of a measurement).
func Join(v []float64, f func(float64) string) string {
	s := make([]string, len(v))
	for i := range v {
		s[i] = f(v[i])
	}
	return strings.Join(s, ", ")
}

func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func F0(v float64) string        { return fmt.Sprintf("%.0f", v) }
func F1(v float64) string        { return fmt.Sprintf("%.1f", v) }
func F2(v float64) string        { return fmt.Sprintf("%.2f", v) }
func X(v float64) string         { return fmt.Sprintf("%.2f×", v) }

// Verdict renders whether a target was met.
func Verdict(met bool) string {
	if met {
		return "met"
	}
	return "NOT met"
}

// Progress prints a timestamped line to stderr while a benchmark runs.
func Progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
