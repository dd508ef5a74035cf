// Package webbundle turns a tree of CommonJS modules into one script a
// browser can load, with a tiny require() of its own. The runner's web
// terminal needs xterm.js in a browser, and Debian ships it only as
// CommonJS modules (node-xterm; libjs-xterm's xterm.js is a stub that
// calls require): this bundles them at build time without node or npm.
package webbundle
