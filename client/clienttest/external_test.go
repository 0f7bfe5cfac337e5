package clienttest_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// externalTimeout bounds building and testing the other module: a few
// seconds with the packages that this test was built from in the build
// cache (3s, 5s with -race), about two minutes if every dependency has to
// be compiled.
const externalTimeout = 5 * time.Minute

// TestFromAnotherModule proves that a module other than sessiond's can test
// its protected service with clienttest: it writes testdata/downstream, a
// module of its own (example.com/downstream, sessiond replaced by this
// checkout), into a temporary directory and runs go test in it. The modules
// come from the local module cache, and their checksums from sessiond's
// go.sum; what the cache lacks (the go.mod files of the whole module graph,
// which building sessiond itself never reads) is fetched through the
// environment's GOPROXY, as a downstream user's go command would.
func TestFromAnotherModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and tests a module of its own; not with -short")
	}
	t.Parallel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := moduleGoVersion(t, filepath.Join(root, "go.mod"), "github.com/sessiond/sessiond")
	goBin, err := exec.LookPath("go") // go test puts its own GOROOT/bin first in PATH
	if err != nil {
		t.Fatalf("the go command is needed to build another module: %v", err)
	}

	dir := filepath.Join(t.TempDir(), "downstream")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "downstream"))); err != nil {
		t.Fatal(err)
	}
	goSum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), goSum, 0o644); err != nil {
		t.Fatal(err)
	}
	goMod := "module example.com/downstream\n\n" +
		"go " + goVersion + "\n\n" +
		"require github.com/sessiond/sessiond v0.0.0\n\n" +
		"replace github.com/sessiond/sessiond => " + root + "\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(goMod), 0o644); err != nil {
		t.Fatal(err)
	}

	timeout := externalTimeout
	if deadline, ok := t.Deadline(); ok {
		timeout = min(timeout, time.Until(deadline)-10*time.Second)
	}
	if timeout < 30*time.Second {
		t.Fatalf("the test's deadline leaves %v to build and test another module; run with a longer -timeout", timeout)
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	// -mod=mod: go.mod gains sessiond's requirements.
	args := []string{"test", "-mod=mod", "-count=1", "-timeout=" + (timeout - 5*time.Second).String()}
	if raceEnabled { // the build cache holds this test's dependencies built so
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, goBin, append(args, "./...")...)
	cmd.Dir = dir
	// The test's own Go environment (GOFLAGS, GOCACHE, GOMODCACHE, GOPROXY).
	cmd.Env = append(os.Environ(), "GOSUMDB=off", "GOTOOLCHAIN=local", "GOWORK=off")
	killGroupOnCancel(cmd)
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("go %s ./... in the other module: %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		t.Fatalf("go test in the other module: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("ok  \texample.com/downstream")) {
		t.Fatalf("go test in the other module passed no test:\n%s", out)
	}
}

// moduleGoVersion reads the go directive of the go.mod at path, checking
// that it is module's.
func moduleGoVersion(t *testing.T, path, module string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var name, version string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		switch f := strings.Fields(sc.Text()); {
		case len(f) == 2 && f[0] == "module":
			name = f[1]
		case len(f) == 2 && f[0] == "go":
			version = f[1]
		}
	}
	if name != module || version == "" {
		t.Fatalf("%s: module %q, go %q; want %s's go.mod", path, name, version, module)
	}
	return version
}
