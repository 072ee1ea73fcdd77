package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Impl is one server under test.
type Impl struct {
	Name  string // short name used in rows and file names
	Label string // library and version, for the report
	// argv returns the command line for mode ("echo" or "ticker") and its
	// flags; "" means the mode is not available.
	argv func(mode string, flags []string) []string
	// missing says why a mode is not available ("" when it is).
	missing map[string]string
	dir     string
}

// Available reports whether mode can run, and why not.
func (im *Impl) Available(mode string) (bool, string) {
	if why := im.missing[mode]; why != "" {
		return false, why
	}
	return true, ""
}

// Command returns the server command for mode.
func (im *Impl) Command(ctx context.Context, mode string, flags []string) *exec.Cmd {
	argv := im.argv(mode, flags)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = im.dir
	return cmd
}

// AllImpls lists the servers in report order: herald first.
var AllImpls = []string{"herald", "uws", "nbio", "gws", "gorilla", "ws"}

// ExtraImpls are servers a run includes only when -impls names them:
// herald-mount is herald's echo mounted on net/http (examples/echo
// -mount), to compare the mounted path's cost with the native one's.
var ExtraImpls = []string{"herald-mount"}

// Layout locates the harness: Bench is the benchmarks module, Root the
// herald repository, Bin where built binaries go.
type Layout struct {
	Root, Bench, Bin string
}

// FindLayout finds the benchmarks module from the working directory.
func FindLayout() (Layout, error) {
	wd, err := os.Getwd()
	if err != nil {
		return Layout{}, err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/heraldws/herald/benchmarks") {
			return Layout{Root: filepath.Dir(d), Bench: d, Bin: filepath.Join(d, "results", "tmp", "bin")}, nil
		}
		if b, err := os.ReadFile(filepath.Join(d, "benchmarks", "go.mod")); err == nil && strings.Contains(string(b), "module github.com/heraldws/herald/benchmarks") {
			return Layout{Root: d, Bench: filepath.Join(d, "benchmarks"), Bin: filepath.Join(d, "benchmarks", "results", "tmp", "bin")}, nil
		}
		if filepath.Dir(d) == d {
			return Layout{}, fmt.Errorf("run inside herald's repository (benchmarks/go.mod not found above %s)", wd)
		}
	}
}

func goBuild(ctx context.Context, dir, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = dir
	b, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(b))
		if i := strings.IndexByte(msg, '\n'); i > 0 && len(msg) > 300 {
			msg = msg[:i]
		}
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("%s", msg)
	}
	return nil
}

// Build builds the loadgen and the servers named, and returns them. A
// server that does not build is returned with its modes marked missing, so
// the run reports it instead of failing.
func Build(ctx context.Context, lay Layout, names []string, logf func(string, ...any)) (loadgen string, impls []*Impl, err error) {
	if err := os.MkdirAll(lay.Bin, 0o755); err != nil {
		return "", nil, err
	}
	loadgen = filepath.Join(lay.Bin, "loadgen")
	if err := goBuild(ctx, lay.Bench, loadgen, "./cmd/loadgen"); err != nil {
		return "", nil, fmt.Errorf("build loadgen: %w", err)
	}
	versions := goVersions(lay)
	nodeReady := ""
	for _, name := range names {
		im := &Impl{Name: name, missing: map[string]string{}, dir: lay.Bench}
		switch name {
		case "herald":
			im.Label = "herald " + gitRev(lay.Root)
			echo := filepath.Join(lay.Bin, "herald-echo")
			ticker := filepath.Join(lay.Bin, "herald-ticker")
			if err := goBuild(ctx, lay.Root, echo, "./examples/echo"); err != nil {
				im.missing["echo"] = "not available: examples/echo does not build: " + err.Error()
			}
			if _, err := os.Stat(filepath.Join(lay.Root, "examples", "ticker")); err != nil {
				im.missing["ticker"] = "not available: examples/ticker does not exist yet"
			} else if err := goBuild(ctx, lay.Root, ticker, "./examples/ticker"); err != nil {
				im.missing["ticker"] = "not available: examples/ticker does not build: " + err.Error()
			}
			// The bench contract's -tls-cert/-tls-key, where an example has
			// them already (its usage names them).
			for mode, bin := range map[string]string{"echo": echo, "ticker": ticker} {
				if im.missing[mode] == "" && !hasFlag(ctx, bin, "-tls-cert") {
					im.missing[mode+"-tls"] = "not available: examples/" + mode + " has no -tls-cert/-tls-key yet"
				}
			}
			im.argv = func(mode string, flags []string) []string {
				bin := echo
				if mode == "ticker" {
					bin = ticker
				}
				return append([]string{bin}, flags...)
			}
		case "herald-mount":
			im.Label = "herald " + gitRev(lay.Root) + " mounted on net/http"
			echo := filepath.Join(lay.Bin, "herald-echo")
			if err := goBuild(ctx, lay.Root, echo, "./examples/echo"); err != nil {
				im.missing["echo"] = "not available: examples/echo does not build: " + err.Error()
			}
			im.missing["ticker"] = "not available: the ticker example is not mounted"
			im.missing["echo-tls"] = "not available: herald's TLS is on its own listener, not mounted on net/http"
			im.argv = func(_ string, flags []string) []string {
				return append([]string{echo, "-mount"}, flags...)
			}
		case "gorilla", "nbio", "gws":
			mod := map[string]string{"gorilla": "github.com/gorilla/websocket", "nbio": "github.com/lesismal/nbio", "gws": "github.com/lxzan/gws"}[name]
			im.Label = strings.TrimPrefix(mod, "github.com/") + " " + versions[mod]
			bin := filepath.Join(lay.Bin, "peer-"+name)
			if err := goBuild(ctx, lay.Bench, bin, "./peers/"+name); err != nil {
				im.missing["echo"] = "not available: peers/" + name + " does not build: " + err.Error()
				im.missing["ticker"] = im.missing["echo"]
			}
			im.argv = func(mode string, flags []string) []string {
				return append([]string{bin, mode}, flags...)
			}
		case "uws", "ws":
			script := map[string]string{"uws": "peers/node/uws.mjs", "ws": "peers/node/ws.mjs"}[name]
			if nodeReady == "" {
				nodeReady = prepareNode(ctx, lay, logf)
			}
			if nodeReady != "ok" {
				im.missing["echo"], im.missing["ticker"] = nodeReady, nodeReady
			} else if _, err := os.Stat(filepath.Join(lay.Bench, script)); err != nil {
				im.missing["echo"] = "not available: " + script + " does not exist"
				im.missing["ticker"] = im.missing["echo"]
			}
			im.Label = nodeLabel(lay, name)
			im.argv = func(mode string, flags []string) []string {
				return append([]string{"node", script, mode}, flags...)
			}
		default:
			return "", nil, fmt.Errorf("unknown server %q (known: %s)", name, strings.Join(append(AllImpls[:len(AllImpls):len(AllImpls)], ExtraImpls...), ", "))
		}
		impls = append(impls, im)
	}
	return loadgen, impls, nil
}

// hasFlag reports whether the usage bin prints for -h names flag.
func hasFlag(ctx context.Context, bin, flag string) bool {
	out, _ := exec.CommandContext(ctx, bin, "-h").CombinedOutput()
	return strings.Contains(string(out), flag+" ")
}

// prepareNode installs the Node peers' packages when they are not there.
func prepareNode(ctx context.Context, lay Layout, logf func(string, ...any)) string {
	if _, err := exec.LookPath("node"); err != nil {
		return "not available: node is not installed"
	}
	if _, err := os.Stat(filepath.Join(lay.Bench, "peers", "node", "node_modules")); err == nil {
		return "ok"
	}
	setup := filepath.Join(lay.Bench, "peers", "setup.sh")
	if _, err := os.Stat(setup); err != nil {
		return "not available: peers/setup.sh does not exist"
	}
	logf("installing the Node peers' packages (peers/setup.sh)")
	cmd := exec.CommandContext(ctx, "bash", setup)
	cmd.Dir = lay.Bench
	if b, err := cmd.CombinedOutput(); err != nil {
		return "not available: peers/setup.sh failed: " + lastLine(string(b))
	}
	return "ok"
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func gitRev(root string) string {
	cmd := exec.Command("git", "rev-parse", "--short", "HEAD")
	cmd.Dir = root
	b, err := cmd.Output()
	if err != nil {
		return "(working tree)"
	}
	rev := strings.TrimSpace(string(b))
	cmd = exec.Command("git", "status", "--porcelain")
	cmd.Dir = root
	if b, err := cmd.Output(); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		rev += "+changes"
	}
	return rev
}

// goVersions reads the pinned versions from benchmarks/go.mod.
func goVersions(lay Layout) map[string]string {
	out := map[string]string{}
	f, err := os.Open(filepath.Join(lay.Bench, "go.mod"))
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		if len(fs) >= 2 && strings.Contains(fs[0], "/") {
			out[fs[0]] = fs[1]
		}
	}
	return out
}

func nodeLabel(lay Layout, name string) string {
	nm := filepath.Join(lay.Bench, "peers", "node", "node_modules")
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(nm, p, "package.json"))
		if err != nil {
			return ""
		}
		var pj struct {
			Version string `json:"version"`
		}
		_ = json.Unmarshal(b, &pj)
		return pj.Version
	}
	nodeV := ""
	if b, err := exec.Command("node", "--version").Output(); err == nil {
		nodeV = " (node " + strings.TrimSpace(string(b)) + ")"
	}
	if name == "ws" {
		return "ws " + read("ws") + nodeV
	}
	for _, p := range []string{"uWebSockets.js", "uws", "@trufflesuite/uws-js-unofficial"} {
		if v := read(p); v != "" {
			return p + " " + v + nodeV
		}
	}
	return "uWebSockets.js" + nodeV
}

// GoBuild builds pkg (a path inside dir's module) into out.
func GoBuild(ctx context.Context, dir, out, pkg string) error { return goBuild(ctx, dir, out, pkg) }

// GitRev is the short revision of the repository at root, with "+changes"
// when its working tree differs.
func GitRev(root string) string { return gitRev(root) }
