// Command xtermbundle writes the runner's web terminal assets (xterm.js
// bundled from Debian's node-xterm, its stylesheet) into a directory;
// `make build` runs it before building bai-krunner.
//
//	go run ./tools/xtermbundle [-lib DIR] [-assets DIR] OUTDIR
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/bai-agent/bai-agent/internal/webbundle"
)

func main() {
	lib := flag.String("lib", webbundle.XtermLib, "node-xterm's lib directory")
	assets := flag.String("assets", webbundle.XtermAssets, "libjs-xterm's directory (xterm.css, addons/fit)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: xtermbundle [-lib DIR] [-assets DIR] OUTDIR")
		os.Exit(2)
	}
	if err := webbundle.WriteXtermAssets(*lib, *assets, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "xtermbundle:", err)
		os.Exit(1)
	}
}
